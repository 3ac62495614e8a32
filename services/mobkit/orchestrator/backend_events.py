"""Events from the process's backend conditions: ``backend_full`` then
``backend_recovered`` (out of space), ``backend_unavailable`` then
``backend_available`` (unreachable).

The event log usually lives on the very etcd that is full or unreachable, so the
queued event sink would drop these. Each event is therefore appended here directly,
again every ``retry`` seconds until the log takes it: a write refused for lack of
space was not applied, so retrying never duplicates it. ``backend_full`` lands once
space is freed, ``backend_unavailable`` once etcd answers again (``data.detected_at_ms``
says when each was noticed), and always before the same replica's event of the end.
Each replica reports what it saw (``data.replica``), so a fleet of N records N of each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from mobkit.core.errors import MobKitError
from mobkit.events.domain import EventLog
from mobkit.server.conditions import BACKEND_FULL, BACKEND_UNAVAILABLE, BackendCondition

log = logging.getLogger("mobkit.orchestrator")

KINDS = {
    BACKEND_FULL: ("backend_full", "backend_recovered"),
    BACKEND_UNAVAILABLE: ("backend_unavailable", "backend_available"),
}
"""Condition reason -> the kinds of the events of its start and of its end."""


class BackendEvents:
    """A listener for :class:`~mobkit.server.conditions.BackendConditions`."""

    def __init__(self, events: EventLog, replica: str, *, retry: float = 1.0) -> None:
        self._events = events
        self._replica = replica
        self._retry = retry
        self._last: asyncio.Task[None] | None = None  # events land in the order noticed
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, condition: BackendCondition, holds: bool) -> None:
        data: dict[str, Any] = {
            "backend": condition.backend,
            "replica": self._replica,
            "reason": condition.reason,
            "detected_at_ms": int(time.time() * 1000),
        }
        if holds:
            data["detail"] = condition.detail
        started, ended = KINDS[condition.reason]
        kind = started if holds else ended
        task = asyncio.get_running_loop().create_task(
            self._append(kind, data, self._last), name=f"event-{kind}"
        )
        self._last = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _append(
        self, kind: str, data: dict[str, Any], after: asyncio.Task[None] | None
    ) -> None:
        if after is not None:
            await asyncio.wait([after])  # whatever became of it; our own cancel propagates
        while True:
            try:
                await self._events.append(kind, identity=None, data=data)
                return
            except MobKitError as exc:
                log.debug("%s event not recorded yet: %s", kind, exc)
            await asyncio.sleep(self._retry)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
