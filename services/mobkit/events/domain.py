"""The event log port, its types, and the rules every backend shares.

Cursor rules (every backend):

* cursors are strictly increasing in log order; ``after_seq`` selects events with
  ``cursor > after_seq``; 0 means "from the oldest retained event";
* ``after_seq`` greater than :meth:`EventLog.latest_cursor` is ``StaleEventCursor``;
  ``after_seq == latest`` is valid and yields only future events;
* :meth:`EventLog.trim` drops old events (retention). A cursor below the highest
  trimmed cursor (the *floor*) was "compacted away" and is ``StaleEventCursor`` too: its
  reader would otherwise silently miss events. 0 always means "from the floor".
* :meth:`EventLog.retain` keeps a window, by age and by count: it drops the oldest
  batches that are older than ``max_age`` or beyond the newest ``max_count`` events.
  Batches go whole, so at least ``max_count`` events stay.

The event id is ``mob-evt-<cursor>``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from mobkit.core.errors import InvalidArgument, StaleEventCursor
from mobkit.core.types import MobStructuralEventEnvelope

TRIM_MAX_BATCHES = 8192
"""Batch keys one :meth:`EventLog.retain` call deletes at most; ``more`` says go again."""

Envelope = MobStructuralEventEnvelope


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append; the log assigns cursor, event id, mob id and timestamp."""

    kind: str
    identity: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TrimReport:
    """What one retention pass did."""

    batches: int = 0  # batch keys deleted
    events: int = 0  # events in them (known from the key names)
    floor: int = 0  # the floor afterwards
    more: bool = False  # stopped at TRIM_MAX_BATCHES: call again


@runtime_checkable
class EventLog(Protocol):
    """A durable, totally ordered log of structural events."""

    async def append(self, kind: str, *, identity: str | None, data: dict[str, Any]) -> Envelope:
        """Append one event; returns it with its cursor."""
        ...

    async def append_many(self, events: Sequence[NewEvent]) -> list[Envelope]:
        """Append events in order, batched (one backend round trip per batch)."""
        ...

    async def list(self, after_seq: int, page_size: int) -> tuple[list[Envelope], int]:
        """Up to ``page_size`` events with ``cursor > after_seq``, oldest first, and the
        latest cursor at the time of the read (0 when the log is empty)."""
        ...

    def watch(self, after_seq: int) -> AsyncGenerator[Envelope, None]:
        """Every event with ``cursor > after_seq``: the catch-up, then the live tail, in
        cursor order without gaps or duplicates. ``StaleEventCursor`` is raised before
        the first event. ``aclose()`` it when done: it holds a backend subscription."""
        ...

    async def latest_cursor(self) -> int:
        """The cursor of the newest event ever appended (0 if none)."""
        ...

    async def trim(self, through: int) -> int:
        """Drop events with ``cursor <= through`` (retention); returns how many were
        dropped. Readers behind the trimmed cursor get ``StaleEventCursor``."""
        ...

    async def retain(
        self,
        *,
        max_age: float | None,
        max_count: int | None,
        now_ms: int | None = None,
        max_batches: int = TRIM_MAX_BATCHES,
    ) -> TrimReport:
        """Keep a window: drop the oldest batches older than ``max_age`` seconds, and
        those beyond the newest ``max_count`` events (None: no such limit). Safe to run
        on several replicas at once. At most ``max_batches`` batches per call."""
        ...

    async def claim_trim(self, seen: int) -> tuple[bool, int]:
        """Claim this retention round: True when this caller won. ``seen`` is the round
        version the caller last learned (start with 0); returns the version to pass
        next time. Callers on one schedule win one at a time."""
        ...


def check_args(after_seq: int, page_size: int | None = None) -> None:
    if after_seq < 0:
        raise InvalidArgument("after_seq", "must not be negative")
    if page_size is not None and page_size <= 0:
        raise InvalidArgument("page_size", "must be positive")


def check_cursor(after_seq: int, latest: int, floor: int) -> None:
    if after_seq > latest or 0 < after_seq < floor:
        raise StaleEventCursor(after_seq, latest)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def event_id(cursor: int) -> str:
    return f"mob-evt-{cursor}"


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch as retention sees it, oldest first by ``order``."""

    order: int  # etcd mod revision (etcd log) or first cursor (memory log)
    last: int  # its last cursor
    n: int  # events in it
    time_ms: int  # when it was appended
    key: bytes = b""


def window_cut(
    batches: Sequence[Batch], max_age: float | None, max_count: int | None, now_ms: int
) -> int:
    """How many of the oldest ``batches`` (in log order) fall outside the window.

    Age: the leading run older than ``max_age`` (a younger batch ends it, so a writer
    with a skewed clock only ever keeps more). Count: everything before the shortest
    suffix holding at least ``max_count`` events. The larger cut wins.
    """
    cut = 0
    if max_age is not None:
        cutoff = now_ms - int(max_age * 1000)
        while cut < len(batches) and batches[cut].time_ms < cutoff:
            cut += 1
    if max_count is not None:
        kept, start = 0, len(batches)
        while start > 0 and kept < max_count:
            start -= 1
            kept += batches[start].n
        cut = max(cut, start)
    return cut
