"""What a turn reports while it runs: text deltas and the start and end of its tool calls.

Progress is advisory: whoever watches a turn (a streaming client) sees it as it
happens, but the turn's output alone is its result. The in-process runtime calls a
:data:`ProgressSink` directly; a remote one sends the same events over
``RunTurnStream`` and its client adapter calls the sink on arrival.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the reply's text, to be appended to what came before."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    call_id: str
    """Pairs the start with its end within one turn."""
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    call_id: str
    name: str
    error_reason: str | None = None
    """None when the call succeeded, else its error's reason (``TOOL_FAILED``, ...)."""


TurnProgress = TextDelta | ToolCallStarted | ToolCallFinished

ProgressSink = Callable[[TurnProgress], None]
"""Receives a turn's progress in order. Called on the event loop: it must not block
(a sink for a slow reader queues)."""
