"""What the flow engine needs from the rest of a replica, as narrow ports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mobkit.core.types import DispatchInput, DispatchReceipt

Dispatch = Callable[[str, DispatchInput, float], Awaitable[DispatchReceipt]]
"""``dispatch(identity, message, timeout)``: a turn from the mob, routed to the
identity's owner (``Orchestrator.dispatch``), waiting up to ``timeout`` for one."""

Emit = Callable[[str, str | None, dict[str, Any]], None]
"""``emit(kind, identity, data)``: a structural event (the orchestrator's event sink)."""

Members = Callable[[], Awaitable[list[str]]]
"""The live replicas' holder strings (the fleet registry)."""
