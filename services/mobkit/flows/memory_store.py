"""Runs in memory: for tests and single-process use. Fencing keeps the highest token
that wrote each run, which is enough where tokens come from one lease provider."""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable

from mobkit.core.errors import SnapshotTooLarge, StaleFencingToken
from mobkit.core.keyspace import run_lease_identity
from mobkit.flows.records import RunRecord
from mobkit.flows.run_codec import encode_record
from mobkit.flows.store import DEFAULT_RUN_RETENTION_SECONDS, MAX_RECORD_BYTES


class MemoryRunStore:
    def __init__(
        self,
        retention_seconds: float = DEFAULT_RUN_RETENTION_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retention_seconds = retention_seconds
        self._clock = clock
        self._runs: dict[str, RunRecord] = {}
        self._ids: list[str] = []  # sorted
        self._tokens: dict[str, int] = {}
        self._requests: dict[str, str] = {}
        self._cancels: set[str] = set()
        self._expires: dict[str, float] = {}

    def _expire(self) -> None:
        now = self._clock()
        for run_id in [r for r, at in self._expires.items() if at <= now]:
            record = self._runs.pop(run_id)
            self._ids.remove(run_id)
            del self._expires[run_id]
            self._tokens.pop(run_id, None)
            self._cancels.discard(run_id)
            if record.request_id is not None:
                self._requests.pop(record.request_id, None)

    async def create(self, record: RunRecord) -> tuple[RunRecord, bool]:
        self._expire()
        if record.request_id is not None and record.request_id in self._requests:
            return self._runs[self._requests[record.request_id]], False
        if record.run_id in self._runs:  # a nested run created again by a new owner
            return self._runs[record.run_id], False
        _check_size(record)
        self._runs[record.run_id] = record
        bisect.insort(self._ids, record.run_id)
        if record.request_id is not None:
            self._requests[record.request_id] = record.run_id
        return record, True

    async def get(self, run_id: str) -> RunRecord | None:
        self._expire()
        return self._runs.get(run_id)

    async def save(self, record: RunRecord, fencing_token: int) -> None:
        self._expire()
        run_id = record.run_id
        current = self._tokens.get(run_id, 0)
        if fencing_token < current or run_id not in self._runs:
            raise StaleFencingToken(run_lease_identity(run_id), fencing_token, current)
        _check_size(record)
        self._tokens[run_id] = fencing_token
        self._runs[run_id] = record
        if record.run.state.terminal:
            self._expires[run_id] = self._clock() + self.retention_seconds
            self._cancels.discard(run_id)

    async def active(self) -> list[str]:
        self._expire()
        return [i for i in self._ids if not self._runs[i].run.state.terminal]

    async def page(self, after: str, limit: int) -> list[RunRecord]:
        self._expire()
        start = bisect.bisect_right(self._ids, after)
        return [self._runs[i] for i in self._ids[start : start + limit]]

    async def request_cancel(self, run_id: str) -> None:
        run = self._runs.get(run_id)
        if run is not None and not run.run.state.terminal:
            self._cancels.add(run_id)

    async def cancel_requested(self, run_id: str) -> bool:
        return run_id in self._cancels


def _check_size(record: RunRecord) -> bytes:
    data = encode_record(record)
    if len(data) > MAX_RECORD_BYTES:
        raise SnapshotTooLarge(len(data), MAX_RECORD_BYTES)
    return data
