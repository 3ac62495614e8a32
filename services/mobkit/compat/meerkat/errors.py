"""Errors as Meerkat MobKit's gateway reads them.

A provider callback that raises reaches the gateway as a JSON-RPC error whose only
content is ``str(exc)``; the gateway classifies it by substrings such as
``stale_fencing_token`` or ``corruption``. So every error leaving an adapter starts
with its API.md reason in snake case (``stale_fencing_token: ...``), keeping its
class for Python callers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mobkit.core.errors import MobKitError


class UnexpectedAnswer(MobKitError):
    """A service answered a batch without exactly one result per input, in input order.

    Raised before the adapter returns anything, so the caller sees no partial answer."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"unexpected answer from a MobKit service: {detail}", detail=detail)
        self.detail = detail


@contextmanager
def reasons_in_messages() -> Iterator[None]:
    """Prefix a MobKit error's message with its snake-case reason, then re-raise it."""
    try:
        yield
    except MobKitError as exc:
        tag = exc.reason.lower()
        text = str(exc)
        if not text.startswith(f"{tag}: "):
            exc.args = (f"{tag}: {text}",)
        raise
