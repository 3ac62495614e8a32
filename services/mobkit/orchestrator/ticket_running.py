"""A ticket whose turn runs on this replica: what its watchers wait on (its final
state, a future) and how its progress reaches them (a bounded queue each: a watcher
that stops reading loses progress, never the turn)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from mobkit.orchestrator.tickets import Ticket, TicketRecord
from mobkit.runtime.sdk import TurnProgress

MAX_PENDING_PROGRESS = 4096


@dataclass(eq=False)
class RunningTicket:
    record: TicketRecord
    token: int
    done: asyncio.Future[Ticket | None]
    """The finished ticket; None when the turn stopped here unfinished (handed over)."""
    fresh: bool = False
    attempts: int = 0
    watchers: set[asyncio.Queue[TurnProgress]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None

    async def relay(self, event: TurnProgress) -> None:
        for queue in self.watchers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)


async def follow(running: RunningTicket, progress: bool) -> AsyncIterator[TurnProgress]:
    """Until ``running`` is done: its progress when ``progress``, else nothing."""
    if not progress:
        await asyncio.shield(running.done)
        return
    queue: asyncio.Queue[TurnProgress] = asyncio.Queue(maxsize=MAX_PENDING_PROGRESS)
    running.watchers.add(queue)
    try:
        while not running.done.done() or not queue.empty():
            if not queue.empty():
                yield queue.get_nowait()
                continue
            getting = asyncio.ensure_future(queue.get())
            waits: set[asyncio.Future[Any]] = {getting, running.done}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if getting.done():
                yield getting.result()
            else:
                getting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getting
    finally:
        running.watchers.discard(queue)
