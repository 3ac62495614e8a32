"""Structural events leave the hot path: queued, then appended in batches.

A turn or an activation only queues its event; one background task appends
whatever has queued in a single ``append_many`` (one etcd round trip per
batch), so a burst of 1,000 activations costs a handful of round trips and a
``Send`` pays none. The price: events queued in the last few milliseconds
before a crash are lost. Checkpoints never depend on events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from mobkit.core.errors import MobKitError
from mobkit.orchestrator.events import NewEvent

log = logging.getLogger("mobkit.orchestrator")
MAX_BATCH = 256


class EventSink:
    def __init__(self, log_: Any) -> None:
        self._log = log_
        self._queue: list[NewEvent] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def emit(self, kind: str, identity: str | None, data: dict[str, Any]) -> None:
        self._queue.append(NewEvent(kind, identity, data))
        self._idle.clear()
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="event-sink")

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)

    async def close(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
