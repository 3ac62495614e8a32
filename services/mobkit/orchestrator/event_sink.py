"""Structural events leave the hot path: queued, then appended in batches.

A turn or an activation only queues its event; one background task appends
whatever has queued in a single ``append_many`` (one etcd round trip per
batch), so a burst of 1,000 activations costs a handful of round trips and a
``Send`` pays none. The first event of a batch waits ``LINGER`` for others to
join it: an append is an fsynced etcd write, and one per turn, sent just as the
next turn begins, queued that turn's checkpoint behind its own fsync (a Send ping
took 1-2 ms longer, measured). The price: events queued in the last ``LINGER``
before a crash are lost, and readers see an event up to ``LINGER`` later.
Checkpoints never depend on events.

The queue is bounded (``MAX_QUEUE`` events): while the log cannot keep up (etcd
slow or away), newer events beyond it are dropped and counted, and once the
queue has room again one ``events_dropped`` event (data ``{"count": n}``) says
how many, so a reader knows the log has a gap there.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any

from mobkit.core.errors import MobKitError
from mobkit.events.domain import EventLog, NewEvent

log = logging.getLogger("mobkit.orchestrator")
MAX_BATCH = 256
MAX_QUEUE = 65_536  # events waiting for the log; about 20 MiB at most
LINGER = 0.05
"""Seconds a batch's first event waits for others (a full batch or a flush goes at once)."""


class EventSink:
    def __init__(
        self, log_: EventLog, *, max_queue: int = MAX_QUEUE, linger: float = LINGER
    ) -> None:
        self._log = log_
        self._queue: collections.deque[NewEvent] = collections.deque()
        self.max_queue = max_queue
        self.linger = linger
        self.dropped = 0  # dropped since the last events_dropped event
        self.dropped_total = 0
        self._wake = asyncio.Event()
        self._hurry = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def emit(self, kind: str, identity: str | None, data: dict[str, Any]) -> None:
        if len(self._queue) >= self.max_queue:
            if not self.dropped:
                log.warning("event queue full (%d): dropping new events", self.max_queue)
            self.dropped += 1
            self.dropped_total += 1
            return
        self._note_dropped()  # the gap goes before the first event that has room
        self._queue.append(NewEvent(kind, identity, data))
        self._idle.clear()
        self._wake.set()
        if len(self._queue) >= MAX_BATCH:
            self._hurry.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="event-sink")

    def hurry(self) -> None:
        """Append what is queued now, without lingering (an event a watcher waits for)."""
        if self._queue:
            self._hurry.set()

    def _note_dropped(self) -> None:
        if self.dropped:
            self._queue.append(NewEvent("events_dropped", None, {"count": self.dropped}))
            self.dropped = 0

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if self.linger > 0 and not self._hurry.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), self.linger)
            self._wake.clear()
            self._hurry.clear()
            while self._queue or self.dropped:
                self._note_dropped()
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
                try:
                    await self._log.append_many(batch)
                except MobKitError as exc:
                    log.warning("%d events not recorded: %s", len(batch), exc)
                except Exception:
                    log.exception("%d events not recorded", len(batch))
            self._idle.set()

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is appended (or dropped)."""
        if self._queue or not self._idle.is_set():
            self._hurry.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)

    async def close(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
