"""A teardown gate, as in the runtime's guarded lifecycle authority.

Every handle to a session shares its gate. Once the owner tears the session
down (lease lost, retired, reset), the gate is closed and every later use of a
stale handle fails closed instead of acting on a session it no longer owns.
"""

from __future__ import annotations

from mobkit.core.errors import NotActive


class TeardownGate:
    __slots__ = ("_closed", "identity")

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self._closed = False

    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def ensure_open(self) -> None:
        if self._closed:
            raise NotActive(self.identity, "torn_down")
