"""What this process knows is wrong with its backends right now.

A backend that refuses writes for a reason retrying will not fix (etcd's NOSPACE
alarm; SQLite's ``SQLITE_FULL``) is reported here once, by whoever notices (the
etcd alarm watch, a storage engine), and cleared the same way. Listeners react to
each change: the server's health goes NOT_SERVING while any condition holds, the
orchestrator emits ``backend_full`` / ``backend_recovered`` and lists the conditions
in ``ListIdentityStatuses``; the ``mobkit_backend_full{backend}`` gauge follows too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from mobkit.observability import metrics

log = logging.getLogger("mobkit.server")

BACKEND_FULL = "BACKEND_FULL"


@dataclass(frozen=True)
class BackendCondition:
    backend: str  # "etcd", "sqlite"
    reason: str  # the ErrorInfo reason writes fail with
    detail: str


Listener = Callable[[str, "BackendCondition | None"], None]
"""Called with the backend and its new condition (None: recovered)."""


class BackendConditions:
    def __init__(self) -> None:
        self._now: dict[str, BackendCondition] = {}
        self._listeners: list[Listener] = []

    def current(self) -> list[BackendCondition]:
        return [self._now[b] for b in sorted(self._now)]

    @property
    def degraded(self) -> bool:
        return bool(self._now)

    def report_full(self, backend: str, detail: str) -> None:
        if backend in self._now:
            return
        condition = self._now[backend] = BackendCondition(backend, BACKEND_FULL, detail)
        metrics.BACKEND_FULL.labels(backend).set(1)
        log.error("%s is out of space: %s; writes fail with BACKEND_FULL", backend, detail)
        self._notify(backend, condition)

    def report_recovered(self, backend: str) -> None:
        if self._now.pop(backend, None) is None:
            return
        metrics.BACKEND_FULL.labels(backend).set(0)
        log.warning("%s has space again: writes resume", backend)
        self._notify(backend, None)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add ``listener``; returns the function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def _notify(self, backend: str, condition: BackendCondition | None) -> None:
        for listener in list(self._listeners):
            try:
                listener(backend, condition)
            except Exception:
                log.exception("backend condition listener failed")
