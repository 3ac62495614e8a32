"""In-process engine for fast tests and single-process development. Nothing survives the
process, and the durability policy says so."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import TypeVar

from mobkit.continuity.domain import (
    DEFAULT_RECEIPT_RETENTION_SECONDS,
    DEFAULT_SNAPSHOT_LIMIT_BYTES,
    UNBOUNDED_LOSS_WINDOW_MS,
)
from mobkit.continuity.operations import Plan, PlanStore, Read, ReadResult, drive
from mobkit.core.types import BufferedExport, DurabilityPolicy

T = TypeVar("T")


class MemoryContinuityStore(PlanStore):
    def __init__(
        self,
        *,
        snapshot_limit_bytes: int = DEFAULT_SNAPSHOT_LIMIT_BYTES,
        receipt_retention: float = DEFAULT_RECEIPT_RETENTION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            snapshot_limit_bytes=snapshot_limit_bytes,
            receipt_retention=receipt_retention,
            clock=clock,
        )
        self.data: dict[bytes, bytes] = {}
        """Logical key -> stored bytes (tests corrupt values here)."""
        self.deadlines: dict[bytes, int] = {}
        """Expiring keys -> deadline (ms since the epoch)."""
        self._expiry: list[tuple[int, bytes]] = []

    @property
    def durability_policy(self) -> DurabilityPolicy:
        # Everything acknowledged is lost when the process exits.
        return BufferedExport(max_loss_window_ms=UNBOUNDED_LOSS_WINDOW_MS)

    def _read(self, request: Read) -> ReadResult:
        listed: tuple[bytes, ...] = ()
        if request.list_prefix is not None:
            listed = tuple(sorted(k for k in self.data if k.startswith(request.list_prefix)))
        return ReadResult([self.data.get(k) for k in request.keys], listed=listed)

    def _expire(self) -> None:
        now = self._now_ms()
        while self._expiry and self._expiry[0][0] <= now:
            deadline, key = heapq.heappop(self._expiry)
            if self.deadlines.get(key) == deadline:  # not rewritten since
                del self.deadlines[key]
                self.data.pop(key, None)

    async def _execute(self, make_plan: Callable[[], Plan[T]], *, writes: bool) -> T:
        # No await between reading and writing: the event loop makes this atomic.
        if writes:
            self._expire()
        commit = drive(make_plan(), self._read)
        self.bytes_written += commit.put_bytes
        for prefix in commit.delete_prefixes:
            for key in [k for k in self.data if k.startswith(prefix)]:
                del self.data[key]
                self.deadlines.pop(key, None)
        for key in (*commit.deletes, *commit.garbage):
            self.data.pop(key, None)
            self.deadlines.pop(key, None)
        self.data.update(commit.staged)
        self.data.update(commit.puts)
        for key, (value, deadline) in commit.expiring.items():
            self.data[key] = value
            self.deadlines[key] = deadline
            heapq.heappush(self._expiry, (deadline, key))
        return commit.result
