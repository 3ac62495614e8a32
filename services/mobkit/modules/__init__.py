"""Modules: supervised MCP tool servers that give agents their tools.

* :mod:`mobkit.modules.config` — the ``[modules]`` TOML section (the trusted
  list of commands, restart policies, pre-spawn environment, timings);
* :mod:`mobkit.modules.connection` — one module process and its MCP session over
  the ``mcp`` SDK's stdio client;
* :mod:`mobkit.modules.supervisor` — states, restarts with backoff, crash-loop
  parking, tool calls and their events;
* :mod:`mobkit.modules.service` — start-up inside ``mobkit serve orchestrator`` /
  ``all`` / ``up``.

Tools are named ``<module id>.<tool>`` (``clock.now``). An agent may call a tool
only when its build draft lists that name in ``external_tools`` (granted by the
customizer, e.g. a ``[[customizer.rules]]`` entry).
"""
