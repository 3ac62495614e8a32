"""Live updates: ``WatchEvents`` relayed to the browser as server-sent events.

Each structural event goes out with its cursor as the SSE ``id``, so a browser
that reconnects (``EventSource`` sends ``Last-Event-ID``) resumes exactly after the
last event it saw; the client's :class:`~mobkit.client.EventStream` does the same
towards the orchestrator when a replica goes away. A comment line every
``HEARTBEAT`` seconds keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from mobkit.cli.output import jsonable
from mobkit.client import AsyncMobKit, MobKitError

HEARTBEAT = 15.0
QUEUE = 1024


def resume_cursor(last_event_id: str | None, after: str | None) -> int:
    """Where a stream starts: the browser's ``Last-Event-ID``, else ``?after=``, else 0."""
    for value in (last_event_id, after):
        if value and value.strip().isdigit():
            return int(value.strip())
    return 0


def sse(event: str, data: Any, *, id_: int | None = None) -> str:
    head = f"id: {id_}\n" if id_ is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, sort_keys=True)}\n\n"


async def stream(mk: AsyncMobKit, after: int) -> AsyncIterator[str]:
    """SSE text for every event after ``after``, until the browser goes away."""
    queue: asyncio.Queue[str] = asyncio.Queue(QUEUE)

    async def pump() -> None:
        try:
            async for event in mk.events(after):
                await queue.put(sse("structural", jsonable(event), id_=event.cursor))
        except MobKitError as exc:  # STALE_EVENT_CURSOR, or a token refused
            await queue.put(sse("failed", {"reason": exc.reason, "message": exc.message}))

    task = asyncio.get_running_loop().create_task(pump())
    try:
        yield sse("ready", {"after": after})
        while True:
            try:
                yield await asyncio.wait_for(queue.get(), HEARTBEAT)
            except TimeoutError:
                yield ": heartbeat\n\n"
            if task.done() and queue.empty():
                return
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, MobKitError):
            await task
