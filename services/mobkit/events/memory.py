"""The in-process event log (cursors 1, 2, 3, ...): for tests and single-process use."""

from __future__ import annotations

import asyncio
import bisect
import builtins
import json
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from mobkit.core.errors import InvalidArgument
from mobkit.events.domain import (
    TRIM_MAX_BATCHES,
    Batch,
    Envelope,
    NewEvent,
    TrimReport,
    check_args,
    check_cursor,
    event_id,
    wall_clock_ms,
    window_cut,
)


class MemoryEventLog:
    """The in-process log: cursors 1, 2, 3, ...; lost when the process ends."""

    def __init__(self, mob_id: str) -> None:
        self.mob_id = mob_id
        self._events: list[Envelope] = []
        self._cursors: list[int] = []
        self._latest = 0
        self._floor = 0
        self._changed = asyncio.Event()

    def _notify(self) -> None:
        # Each waiter holds the event current when it looked; replacing it before set()
        # means a waiter never misses an append made after its check.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def append(self, kind: str, *, identity: str | None, data: dict[str, Any]) -> Envelope:
        return (await self.append_many([NewEvent(kind, identity, data)]))[0]

    async def append_many(self, events: Sequence[NewEvent]) -> builtins.list[Envelope]:
        now = wall_clock_ms()
        try:  # private copies, JSON-checked like the etcd log's
            datas = [json.loads(json.dumps(ev.data)) for ev in events]
        except (TypeError, ValueError) as exc:
            raise InvalidArgument("data", f"not JSON-serialisable: {exc}") from exc
        out: list[Envelope] = []
        for ev, data in zip(events, datas, strict=True):
            self._latest += 1
            env = Envelope(
                event_id=event_id(self._latest),
                cursor=self._latest,
                mob_id=self.mob_id,
                timestamp_ms=now,
                kind=ev.kind,
                data=data,
                agent_identity=ev.identity,
            )
            self._events.append(env)
            self._cursors.append(env.cursor)
            out.append(env)
        if out:
            self._notify()
        return out

    def _after(self, after_seq: int, limit: int | None = None) -> builtins.list[Envelope]:
        start = bisect.bisect_right(self._cursors, after_seq)
        end = len(self._events) if limit is None else start + limit
        return self._events[start:end]

    async def list(self, after_seq: int, page_size: int) -> tuple[builtins.list[Envelope], int]:
        check_args(after_seq, page_size)
        check_cursor(after_seq, self._latest, self._floor)
        return self._after(after_seq, page_size), self._latest

    async def watch(self, after_seq: int) -> AsyncGenerator[Envelope, None]:
        check_args(after_seq)
        check_cursor(after_seq, self._latest, self._floor)
        last = after_seq
        while True:
            changed = self._changed
            # A reader that fell behind a trim would silently skip events.
            check_cursor(last, self._latest, self._floor)
            pending = self._after(last)
            for env in pending:
                last = env.cursor
                yield env
            if not pending:
                await changed.wait()

    async def latest_cursor(self) -> int:
        return self._latest

    async def trim(self, through: int) -> int:
        cut = bisect.bisect_right(self._cursors, through)
        if cut == 0:
            return 0
        self._floor = max(self._floor, self._cursors[cut - 1])
        del self._events[:cut]
        del self._cursors[:cut]
        self._notify()
        return cut

    async def retain(
        self,
        *,
        max_age: float | None,
        max_count: int | None,
        now_ms: int | None = None,
        max_batches: int = TRIM_MAX_BATCHES,
    ) -> TrimReport:
        # Each event is its own batch here.
        batches = [Batch(e.cursor, e.cursor, 1, e.timestamp_ms) for e in self._events]
        now = wall_clock_ms() if now_ms is None else now_ms
        cut = window_cut(batches, max_age, max_count, now)
        more = cut > max_batches
        cut = min(cut, max_batches)
        if cut == 0:
            return TrimReport(floor=self._floor)
        dropped = await self.trim(batches[cut - 1].last)
        return TrimReport(dropped, dropped, self._floor, more)

    async def claim_trim(self, seen: int) -> tuple[bool, int]:
        return True, seen + 1  # one process: no one to race
