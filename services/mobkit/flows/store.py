"""The run store port: where runs are kept, fenced by their owner's lease. No I/O here.

Backends: :class:`~mobkit.flows.memory_store.MemoryRunStore` (tests, single process)
and :class:`~mobkit.flows.etcd_store.EtcdRunStore` (every served fleet: runs live in
etcd beside the leases that fence them, whichever continuity backend holds agent
state).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from mobkit.flows.records import RunRecord

DEFAULT_RUN_RETENTION_SECONDS = 7 * 24 * 3600.0
MAX_RECORD_BYTES = 1024 * 1024
"""A run's record, its steps' outputs included, stays under etcd's request limit; a
step whose results would pass it fails the run with SNAPSHOT_TOO_LARGE."""


@runtime_checkable
class RunStore(Protocol):
    async def create(self, record: RunRecord) -> tuple[RunRecord, bool]:
        """Store a new run; with a ``request_id`` already used, the run it created and
        ``False`` instead (StartRun is idempotent by request id)."""
        ...

    async def get(self, run_id: str) -> RunRecord | None:
        """The run, or None: unknown, or past its retention."""
        ...

    async def save(self, record: RunRecord, fencing_token: int) -> None:
        """Replace the run's record while ``fencing_token`` is its lease's token
        (STALE_FENCING_TOKEN otherwise, and nothing changes). A finished run leaves
        the set of active runs and is kept for the retention."""
        ...

    async def active(self) -> list[str]:
        """The ids of the runs not finished yet, oldest first."""
        ...

    async def page(self, after: str, limit: int) -> list[RunRecord]:
        """Up to ``limit`` runs with ids greater than ``after``, in id (creation) order."""
        ...

    async def request_cancel(self, run_id: str) -> None:
        """Ask the run's owner to cancel it."""
        ...

    async def cancel_requested(self, run_id: str) -> bool: ...
