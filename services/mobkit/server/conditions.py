"""What this process knows is wrong with its backends right now.

Two kinds of condition, each reported once by whoever notices and cleared the
same way:

* ``BACKEND_FULL``: a backend refuses writes for a reason retrying will not fix
  (etcd's NOSPACE alarm, found by the etcd status watch; SQLite's ``SQLITE_FULL``,
  found by its storage engine);
* ``BACKEND_UNAVAILABLE``: a backend cannot be reached (etcd answers no status
  call; SQLite fails with an I/O error).

Listeners react to each change: the server's health goes NOT_SERVING for the
services that use a backend with a condition, the orchestrator emits
``backend_full`` / ``backend_recovered`` and ``backend_unavailable`` /
``backend_available`` and lists the conditions in ``ListIdentityStatuses``; the
``mobkit_backend_full{backend}`` gauge follows the first kind.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from mobkit.observability import metrics

log = logging.getLogger("mobkit.server")

BACKEND_FULL = "BACKEND_FULL"
BACKEND_UNAVAILABLE = "BACKEND_UNAVAILABLE"


@dataclass(frozen=True)
class BackendCondition:
    backend: str  # "etcd", "sqlite"
    reason: str  # the ErrorInfo reason calls fail with meanwhile
    detail: str


Listener = Callable[[BackendCondition, bool], None]
"""Called with a condition and whether it now holds (False: it has just cleared)."""


class BackendConditions:
    def __init__(self) -> None:
        self._now: dict[tuple[str, str], BackendCondition] = {}
        self._listeners: list[Listener] = []

    def current(self) -> list[BackendCondition]:
        return [self._now[k] for k in sorted(self._now)]

    @property
    def degraded(self) -> bool:
        return bool(self._now)

    def affected(self) -> frozenset[str]:
        """The backends with at least one condition."""
        return frozenset(backend for backend, _ in self._now)

    def holds(self, backend: str, reason: str) -> bool:
        return (backend, reason) in self._now

    def report_full(self, backend: str, detail: str) -> None:
        condition = self._add(backend, BACKEND_FULL, detail)
        if condition is not None:
            metrics.BACKEND_FULL.labels(backend).set(1)
            log.error("%s is out of space: %s; writes fail with BACKEND_FULL", backend, detail)
            self._notify(condition, True)

    def report_recovered(self, backend: str) -> None:
        condition = self._now.pop((backend, BACKEND_FULL), None)
        if condition is not None:
            metrics.BACKEND_FULL.labels(backend).set(0)
            log.warning("%s has space again: writes resume", backend)
            self._notify(condition, False)

    def report_unavailable(self, backend: str, detail: str) -> None:
        condition = self._add(backend, BACKEND_UNAVAILABLE, detail)
        if condition is not None:
            log.error("%s %s; its services are NOT_SERVING until it answers", backend, detail)
            self._notify(condition, True)

    def report_available(self, backend: str) -> None:
        condition = self._now.pop((backend, BACKEND_UNAVAILABLE), None)
        if condition is not None:
            log.warning("%s answers again; its services are SERVING", backend)
            self._notify(condition, False)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add ``listener``; returns the function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def _add(self, backend: str, reason: str, detail: str) -> BackendCondition | None:
        """The new condition, or None if it already holds."""
        if (backend, reason) in self._now:
            return None
        condition = self._now[backend, reason] = BackendCondition(backend, reason, detail)
        return condition

    def _notify(self, condition: BackendCondition, holds: bool) -> None:
        for listener in list(self._listeners):
            try:
                listener(condition, holds)
            except Exception:
                log.exception("backend condition listener failed")
