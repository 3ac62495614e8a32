"""In-process engine for fast tests and single-process development. Nothing survives the
process, and the durability policy says so."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from mobkit.continuity.domain import DEFAULT_SNAPSHOT_LIMIT_BYTES, UNBOUNDED_LOSS_WINDOW_MS
from mobkit.continuity.operations import Plan, PlanStore, Read, ReadResult, drive
from mobkit.core.types import BufferedExport, DurabilityPolicy

T = TypeVar("T")


class MemoryContinuityStore(PlanStore):
    def __init__(self, *, snapshot_limit_bytes: int = DEFAULT_SNAPSHOT_LIMIT_BYTES) -> None:
        super().__init__(snapshot_limit_bytes=snapshot_limit_bytes)
        self.data: dict[bytes, bytes] = {}
        """Logical key -> stored bytes (tests corrupt values here)."""

    @property
    def durability_policy(self) -> DurabilityPolicy:
        # Everything acknowledged is lost when the process exits.
        return BufferedExport(max_loss_window_ms=UNBOUNDED_LOSS_WINDOW_MS)

    def _read(self, request: Read) -> ReadResult:
        return ReadResult([self.data.get(k) for k in request.keys])

    async def _execute(self, make_plan: Callable[[], Plan[T]], *, writes: bool) -> T:
        # No await between reading and writing: the event loop makes this atomic.
        commit = drive(make_plan(), self._read)
        for prefix in commit.delete_prefixes:
            for key in [k for k in self.data if k.startswith(prefix)]:
                del self.data[key]
        for key in commit.deletes:
            self.data.pop(key, None)
        self.data.update(commit.puts)
        return commit.result
