"""What the ``llm`` kind needs to reach its model, and the bounds of one turn.

Runtime-wide values come from the ``[llm]`` table of the runtime's config file and
``--llm-base-url``; where neither sets the endpoint, the ``OPENAI_BASE_URL`` and
``OPENAI_API_KEY`` variables do (the SDK's own). One agent's draft may override
them with ``llm.<key>`` labels (a customizer rule sets them per profile or identity):
``llm.base_url = "http://gpu-1:8000/v1"``, ``llm.temperature = "0.2"``. The model,
system prompt and instructions are the draft's own fields.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mobkit.core.errors import InvalidArgument

LABEL_PREFIX = "llm."
NO_KEY = "unused"
"""Sent when no key is configured: local servers (vLLM, Ollama, llama.cpp) ignore it."""


@dataclass(frozen=True, slots=True)
class LlmSettings:
    base_url: str | None = None
    """Chat Completions endpoint, ``.../v1``; None: ``OPENAI_BASE_URL``, else OpenAI's."""
    api_key_env: str = "OPENAI_API_KEY"
    """The environment variable holding the API key (keys never sit in config files)."""
    model: str | None = None
    """Model of agents whose draft names none."""
    timeout: float = 60.0
    """Seconds one model request may take, between streamed chunks too."""
    max_retries: int = 2
    """Retries of a request answered 429 or 5xx, or not at all (backoff 0.5 s doubling to
    8 s, or the server's Retry-After)."""
    max_tool_rounds: int = 8
    """Rounds of tool calls one turn may run; the round after the last is asked to answer."""
    history_max_messages: int = 200
    """Most messages of history kept and sent (0: no bound)."""
    history_max_chars: int = 200_000
    """Most characters of history kept and sent (0: no bound)."""
    history_strategy: str = "truncate"
    """What happens to the exchanges the bound drops: ``truncate`` forgets them,
    ``summarize`` folds them into a running summary the model writes."""
    temperature: float | None = None
    max_tokens: int | None = None
    """Most tokens one completion may produce (None: the endpoint's default)."""

    @property
    def api_key(self) -> str:
        return os.environ.get(self.api_key_env) or NO_KEY

    @property
    def endpoint(self) -> str | None:
        return self.base_url or os.environ.get("OPENAI_BASE_URL") or None

    def with_values(self, values: Mapping[str, Any], where: str) -> LlmSettings:
        """A copy with ``values`` (strings are parsed) set; unknown keys and values out
        of bounds are INVALID_ARGUMENT naming ``where.key``."""
        changes: dict[str, Any] = {}
        for key, raw in values.items():
            if key not in _FIELDS:
                known = ", ".join(sorted(_FIELDS))
                raise InvalidArgument(f"{where}{key}", f"unknown setting (known: {known})")
            changes[key] = _parse(key, raw, f"{where}{key}")
        return dataclasses.replace(self, **changes)

    def for_draft(self, labels: Mapping[str, str]) -> LlmSettings:
        """These settings under one draft's ``llm.*`` labels."""
        overrides = {
            k[len(LABEL_PREFIX) :]: v for k, v in labels.items() if k.startswith(LABEL_PREFIX)
        }
        return self.with_values(overrides, "labels." + LABEL_PREFIX) if overrides else self


_FIELDS = {f.name: f for f in dataclasses.fields(LlmSettings)}
SECTION_KEYS = frozenset(_FIELDS)
"""The keys of the ``[llm]`` table (and of ``llm.*`` draft labels)."""
_BOUNDS: dict[str, tuple[float, float]] = {
    "timeout": (0.01, 3600),
    "max_retries": (0, 10),
    "max_tool_rounds": (0, 100),
    "history_max_messages": (0, 1_000_000),
    "history_max_chars": (0, 1_000_000_000),
    "temperature": (0, 2),
    "max_tokens": (1, 10_000_000),
}


STRATEGIES = ("truncate", "summarize")


def _parse(key: str, raw: Any, where: str) -> Any:
    kind = str(_FIELDS[key].type)
    if key == "history_strategy" and raw not in STRATEGIES:
        raise InvalidArgument(where, f"must be one of {', '.join(STRATEGIES)} (got {raw!r})")
    if raw is None or kind.startswith("str"):
        return None if raw is None else str(raw)
    try:
        value: float | int = int(raw) if "int" in kind else float(raw)
    except (TypeError, ValueError):
        raise InvalidArgument(where, f"not a number: {raw!r}") from None
    low, high = _BOUNDS[key]
    if not (math.isfinite(value) and low <= value <= high):
        raise InvalidArgument(where, f"must be between {low:g} and {high:g}")
    return value


def from_section(section: Any, base_url: str | None = None) -> LlmSettings:
    """The ``[llm]`` table of a config file, under ``--llm-base-url`` when given."""
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise InvalidArgument("llm", "expected a table of settings")
    settings = LlmSettings().with_values(section, "llm.")
    return dataclasses.replace(settings, base_url=base_url) if base_url else settings
