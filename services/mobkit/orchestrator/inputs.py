"""What a turn's input must be before the orchestrator routes it anywhere."""

from __future__ import annotations

from mobkit.core.bounds import name_problem
from mobkit.core.errors import InvalidArgument
from mobkit.core.types import DispatchInput


def check_dispatch_input(message: DispatchInput) -> DispatchInput:
    """Refuse an empty message (a turn, and a checkpoint, for nothing: almost always a
    client bug) and keys beyond the name bounds (they are stored and echoed)."""
    if not message.content:
        raise InvalidArgument("input.content", "must not be empty")
    for field, value in (
        ("input.idempotency_key", message.idempotency_key),
        ("input.correlation_id", message.correlation_id),
    ):
        problem = name_problem(value) if value else None
        if problem is not None:
            raise InvalidArgument(field, problem)
    return message
