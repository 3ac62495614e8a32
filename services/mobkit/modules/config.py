"""The ``[modules]`` section: the trusted list of module commands, and how they are supervised.

::

    [modules]
    namespace = "example"          # DiscoverySpec.namespace (reported in module events)
    start_timeout = 20.0           # s from spawn to MCP handshake + tool list
    call_timeout = 30.0            # s one tool call may take
    restart_wait = 10.0            # s a tool call waits for a starting/restarting module
    backoff_initial = 0.5          # s before the first restart; doubles per consecutive failure
    backoff_max = 30.0             # s, the cap
    crash_loop_limit = 5           # this many exits within crash_loop_window ...
    crash_loop_window = 60.0       # ... park the module Unhealthy with its last error
    log_max_bytes = 10485760       # <data-dir>/modules/<id>.log rotates at this size ...
    log_backups = 3                # ... keeping <id>.log.1 .. <id>.log.3 (40 MiB at most)

    [[modules.module]]
    id = "clock"                   # [a-z0-9][a-z0-9_-]*; its tools are "clock.<tool>"
    python_module = "mobkit.examples_modules.clock"   # runs `<this python> -m ...`
    # or: command = "/usr/local/bin/notes-mcp"  (a PATH lookup when it has no "/")
    args = []
    restart_policy = "on_failure"  # never | on_failure | always
    required = true                # false: start-up goes on without it
    env = { CLOCK_LABEL = "demo" } # PreSpawnData: added to the minimal environment
                                   # (HOME, LOGNAME, PATH, SHELL, TERM, USER) the MCP SDK passes

Only the modules listed here can ever run: requests name tools, never commands.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mobkit.core.errors import InvalidArgument
from mobkit.core.types import (
    DiscoverySpec,
    MobKitConfig,
    ModuleConfig,
    PreSpawnData,
    RestartPolicy,
)
from mobkit.modules.logs import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES

SECTION = "modules"
# No "." (the tool separator), so "<module>.<tool>" splits unambiguously.
MODULE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

_SUPERVISION_KEYS = frozenset(
    {
        "start_timeout",
        "call_timeout",
        "restart_wait",
        "backoff_initial",
        "backoff_max",
        "crash_loop_limit",
        "crash_loop_window",
        "log_max_bytes",
        "log_backups",
    }
)
_COUNT_KEYS = frozenset({"crash_loop_limit", "log_max_bytes", "log_backups"})
SECTION_KEYS = frozenset({"namespace", "module"}) | _SUPERVISION_KEYS
MODULE_KEYS = frozenset(
    {"id", "command", "python_module", "args", "restart_policy", "required", "env"}
)


@dataclass(frozen=True, slots=True)
class Supervision:
    start_timeout: float = 20.0
    call_timeout: float = 30.0
    restart_wait: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    crash_loop_limit: int = 5
    crash_loop_window: float = 60.0
    log_max_bytes: int = DEFAULT_MAX_BYTES
    log_backups: int = DEFAULT_BACKUPS

    def backoff(self, consecutive_failures: int) -> float:
        """Delay before restart number ``consecutive_failures`` (1-based) in a row."""
        exponent = max(0, consecutive_failures - 1)
        return min(self.backoff_initial * 2 ** min(exponent, 30), self.backoff_max)


@dataclass(frozen=True, slots=True)
class ModulesConfig:
    """The seed's ``MobKitConfig`` (modules, discovery, pre-spawn data) plus what the
    supervisor needs: which modules start-up requires, and the timings."""

    mobkit: MobKitConfig = field(default_factory=MobKitConfig)
    required: frozenset[str] = frozenset()
    supervision: Supervision = Supervision()

    @property
    def modules(self) -> tuple[ModuleConfig, ...]:
        return self.mobkit.modules

    def env(self, module_id: str) -> dict[str, str]:
        """The module's pre-spawn environment (the last value of a repeated name wins)."""
        out: dict[str, str] = {}
        for data in self.mobkit.pre_spawn:
            if data.module_id == module_id:
                out.update(data.env)
        return out


def parse_modules(section: Mapping[str, Any] | None) -> ModulesConfig:
    """Parse ``settings.sections["modules"]``; ``InvalidArgument`` names the bad key."""
    if not section:
        return ModulesConfig()
    if not isinstance(section, Mapping):
        raise InvalidArgument(SECTION, "must be a table")
    _known(section, SECTION_KEYS, SECTION)
    namespace = section.get("namespace", "default")
    if not isinstance(namespace, str) or not namespace:
        raise InvalidArgument(f"{SECTION}.namespace", "must be a non-empty string")
    raw_modules = section.get("module", [])
    if not isinstance(raw_modules, list):
        raise InvalidArgument(
            f"{SECTION}.module", "must be an array of tables ([[modules.module]])"
        )
    modules: list[ModuleConfig] = []
    pre_spawn: list[PreSpawnData] = []
    required: set[str] = set()
    for i, raw in enumerate(raw_modules):
        where = f"{SECTION}.module[{i}]"
        config, env, is_required = _module(raw, where)
        if any(m.id == config.id for m in modules):
            raise InvalidArgument(f"{where}.id", f"duplicate module id {config.id!r}")
        modules.append(config)
        if env:
            pre_spawn.append(PreSpawnData(config.id, tuple(env.items())))
        if is_required:
            required.add(config.id)
    return ModulesConfig(
        mobkit=MobKitConfig(
            modules=tuple(modules),
            discovery=DiscoverySpec(namespace, tuple(m.id for m in modules)),
            pre_spawn=tuple(pre_spawn),
        ),
        required=frozenset(required),
        supervision=_supervision(section),
    )


def _known(raw: Mapping[str, Any], keys: frozenset[str], where: str) -> None:
    for key in raw:
        if key not in keys:
            raise InvalidArgument(
                f"{where}.{key}", f"unknown setting (expected {', '.join(sorted(keys))})"
            )


def _module(raw: Any, where: str) -> tuple[ModuleConfig, dict[str, str], bool]:
    if not isinstance(raw, Mapping):
        raise InvalidArgument(where, "must be a table")
    _known(raw, MODULE_KEYS, where)
    module_id = raw.get("id")
    if not isinstance(module_id, str) or not MODULE_ID.match(module_id):
        raise InvalidArgument(
            f"{where}.id", "required: lowercase letters, digits, '-' and '_' (at most 63)"
        )
    args = raw.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise InvalidArgument(f"{where}.args", "must be a list of strings")
    command, python_module = raw.get("command"), raw.get("python_module")
    if (command is None) == (python_module is None):
        raise InvalidArgument(where, "give exactly one of command or python_module")
    if python_module is not None:
        if not isinstance(python_module, str) or not python_module:
            raise InvalidArgument(f"{where}.python_module", "must be a module name")
        # The interpreter running MobKit, so the module sees the same installed packages.
        command, args = sys.executable, ["-m", python_module, *args]
    if not isinstance(command, str) or not command:
        raise InvalidArgument(f"{where}.command", "must be a non-empty string")
    policy_raw = raw.get("restart_policy", RestartPolicy.ON_FAILURE.value)
    try:
        policy = RestartPolicy(policy_raw)
    except ValueError:
        choices = ", ".join(p.value for p in RestartPolicy)
        raise InvalidArgument(f"{where}.restart_policy", f"must be one of {choices}") from None
    is_required = raw.get("required", True)
    if not isinstance(is_required, bool):
        raise InvalidArgument(f"{where}.required", "must be true or false")
    env = raw.get("env", {})
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise InvalidArgument(f"{where}.env", 'must be a table of NAME = "value" strings')
    config = ModuleConfig(id=module_id, command=command, args=tuple(args), restart_policy=policy)
    return config, dict(env), is_required


def _supervision(section: Mapping[str, Any]) -> Supervision:
    values: dict[str, Any] = {}
    for key in _SUPERVISION_KEYS:
        if key not in section:
            continue
        value = section[key]
        where = f"{SECTION}.{key}"
        if key in _COUNT_KEYS:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidArgument(where, "must be a positive integer")
        elif not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise InvalidArgument(where, "must be a positive number of seconds")
        values[key] = value
    supervision = Supervision(**values)
    if supervision.backoff_max < supervision.backoff_initial:
        raise InvalidArgument(f"{SECTION}.backoff_max", "must not be below backoff_initial")
    return supervision
