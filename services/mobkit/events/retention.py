"""Event retention: one replica at a time trims the event log to its window.

Every ``interval`` seconds each replica tries to claim the round
(:meth:`EventLog.claim_trim`, a compare-and-swap on ``<prefix>/events-meta/trimmer``);
the winner drops the batches older than ``max_age`` and those beyond the newest
``max_count`` events (:meth:`EventLog.retain`). Two trimmers at once would still be
harmless: the floor is only raised by a compare-and-swap before anything below it is
deleted. A pass that hit its per-call bound goes again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from mobkit.core.errors import MobKitError
from mobkit.events.domain import EventLog, TrimReport

# The orchestrator's logger, as before the log became its own package.
log = logging.getLogger("mobkit.orchestrator")

DAY = 24 * 3600.0
DEFAULT_MAX_AGE = 7 * DAY
DEFAULT_MAX_COUNT = 100_000
DEFAULT_INTERVAL = 60.0
MAX_PASSES = 64  # per round, when each pass stops at its batch bound


@dataclass(frozen=True, slots=True)
class Retention:
    """The window. ``max_age`` in seconds, ``max_count`` in events; 0 = no such bound."""

    max_age: float = DEFAULT_MAX_AGE
    max_count: int = DEFAULT_MAX_COUNT
    interval: float = DEFAULT_INTERVAL

    @property
    def bounded(self) -> bool:
        return self.max_age > 0 or self.max_count > 0


class EventTrimmer:
    """The retention loop of one replica."""

    def __init__(self, events: EventLog, retention: Retention) -> None:
        self.events = events
        self.retention = retention
        self._seen = 0  # the trim round version this replica last learned
        self._task: asyncio.Task[None] | None = None
        self.last: TrimReport | None = None

    async def run_once(self) -> TrimReport | None:
        """Claim the round; if won, trim (again while a pass stops at its bound).
        Returns what was trimmed, or None when another replica has the round."""
        won, self._seen = await self.events.claim_trim(self._seen)
        if not won:
            return None
        r = self.retention
        total = TrimReport()
        for _ in range(MAX_PASSES):
            report = await self.events.retain(
                max_age=r.max_age if r.max_age > 0 else None,
                max_count=r.max_count if r.max_count > 0 else None,
            )
            total = TrimReport(
                total.batches + report.batches,
                total.events + report.events,
                report.floor,
                report.more,
            )
            if not report.more:
                break
        if total.batches:
            log.info(
                "event retention: dropped %d events (%d batches); floor %d",
                total.events,
                total.batches,
                total.floor,
            )
        self.last = total
        return total

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.retention.interval)
            try:
                await self.run_once()
            except MobKitError as exc:
                log.warning("event retention failed: %s", exc)
            except Exception:
                log.exception("event retention crashed; continuing")

    def start(self) -> None:
        if self._task is None and self.retention.bounded:
            self._task = asyncio.create_task(self._loop(), name="event-retention")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def trimmer_for(events: object, retention: Retention) -> EventTrimmer | None:
    """The trimmer of a served orchestrator's log (None for a log without retention)."""
    if isinstance(events, EventLog):
        return EventTrimmer(events, retention)
    return None
