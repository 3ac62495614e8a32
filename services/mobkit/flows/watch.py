"""A run's events from the event log, until its end: ``WatchRun`` and ``WatchTurn``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from mobkit.core.errors import StaleEventCursor
from mobkit.core.types import MobStructuralEventEnvelope
from mobkit.events.domain import EventLog
from mobkit.flows.store import RunStore

STATE_POLL_SECONDS = 2.0
"""How often a watch re-reads its run, so that it ends even if the run's last event
never reached the log (an owner that died between its checkpoint and the event)."""
TERMINAL_KINDS = frozenset({"run_succeeded", "run_failed", "run_canceled"})


async def run_events(
    events: EventLog, store: RunStore, run_id: str, after_seq: int, finished: bool
) -> AsyncIterator[MobStructuralEventEnvelope]:
    """The run's events (and its nested runs') after ``after_seq``, until the run's
    last event, or for a run ``finished`` already until the log's latest cursor now."""
    latest = await events.latest_cursor()
    if after_seq > latest:
        raise StaleEventCursor(after_seq, latest)
    if finished and after_seq >= latest:
        return
    queue: asyncio.Queue[MobStructuralEventEnvelope] = asyncio.Queue(maxsize=1024)

    async def pump() -> None:
        watch = events.watch(after_seq)
        try:
            async for event in watch:
                await queue.put(event)
        finally:
            await watch.aclose()

    pumping = asyncio.create_task(pump(), name=f"watch-run-{run_id}")
    try:
        while True:
            try:
                async with asyncio.timeout(STATE_POLL_SECONDS):
                    event = await queue.get()
            except TimeoutError:
                if pumping.done():
                    pumping.result()  # a failed watch ends the stream with its error
                    return
                record = await store.get(run_id)
                if (record is None or record.run.state.terminal) and queue.empty():
                    if await events.latest_cursor() <= latest:
                        return
                    finished = True
                continue
            owner = _run_of(event)
            if owner == run_id or (owner or "").startswith(run_id + "."):
                yield event
                if owner == run_id and event.kind in TERMINAL_KINDS:
                    return
            if finished and event.cursor >= latest:
                return
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pumping


def _run_of(event: MobStructuralEventEnvelope) -> str | None:
    data = event.data
    if isinstance(data, dict):
        value = data.get("run_id")
        return value if isinstance(value, str) else None
    return None
