"""The durable structural event log: append, list by cursor, watch (catch-up + live tail).

Two implementations share one contract (:class:`EventLog`):

* :class:`EtcdEventLog` — events live in etcd, so they survive restarts and every
  replica writing to the same etcd shares one totally ordered log.
* :class:`MemoryEventLog` — a monotonic counter in this process, for fast tests.

Cursor rules (both implementations):

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

etcd layout (``<prefix>`` is e.g. ``/mobkit``):

* ``<prefix>/events/<instance>/<time ns>-<seq>-<random>-<n>`` — one key per appended
  batch of ``n`` events; the value is JSON ``{"v": 1, "events": [...]}`` (envelopes
  without cursor and event id). A batch key is written once and never changed, so its
  ``mod_revision`` is the etcd revision of the append. The time and ``n`` in the name let
  retention plan from a keys-only range (keys written before ``n`` was added are read).
* ``<prefix>/events-meta/head`` — rewritten by every append: its ``mod_revision`` and
  its ``n`` give the latest cursor in one key read.
* ``<prefix>/events-meta/floor`` — the highest trimmed cursor. Only ever raised, by a
  compare-and-swap, before any batch below it is deleted: concurrent trimmers are
  harmless (each deletes only batches at or below the floor it raised, and a window
  never moves backwards, so a plan made earlier never cuts into a later window).
* ``<prefix>/events-meta/trimmer`` — the retention round claim: replicas claim each
  round with a CAS on its version (the Kubernetes API server's compactor does the same),
  so normally one replica per interval does the work.

The cursor of the ``i``-th event of a batch appended at etcd revision ``r`` is
``r * CURSOR_STRIDE + i``: etcd revisions are global to the cluster and survive
restarts, so cursors are monotonic across replicas; the stride lets one round trip
append a whole batch (every op of an etcd txn shares its revision). The event id is
``mob-evt-<cursor>``.

etcd compaction (of its MVCC history) loses no event — batch keys are never
overwritten — so a watch whose start revision was compacted catches up by ranging
over the keys instead, then watches again: compaction never makes a cursor stale.
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from mobkit.core.errors import (
    BackendUnavailable,
    InvalidArgument,
    StaleEventCursor,
    StoreCorruption,
)
from mobkit.core.keyspace import Keyspace
from mobkit.core.types import MobStructuralEventEnvelope
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.errors import EtcdCompacted, EtcdError, EtcdUnavailable, backend_error
from mobkit.etcd.ops import (
    compare_create_revision,
    compare_mod_revision,
    compare_version,
    delete_op,
    prefix_end,
    put_op,
    range_op,
    txn_request,
)
from mobkit.gen.etcd.api.etcdserverpb import rpc_pb2
from mobkit.gen.etcd.api.mvccpb import kv_pb2

log = logging.getLogger(__name__)

CURSOR_STRIDE = 1000
"""Cursor slots per etcd revision: ``cursor = revision * CURSOR_STRIDE + index``."""

MAX_BATCH_EVENTS = 256
"""Events per batch key (one etcd round trip); must stay below ``CURSOR_STRIDE``."""

MAX_BATCH_BYTES = 512 * 1024
"""Bytes per batch key, well under etcd's default 1.5 MiB request limit."""

CATCH_UP_PAGE = 256
"""Batch keys per range while a watch catches up after etcd compaction."""

TRIM_MAX_BATCHES = 8192
"""Batch keys one :meth:`EventLog.retain` call deletes at most; ``more`` says go again."""

SCAN_PAGE = 1000
"""Keys per range while retention lists the batch keys (keys only, ~100 bytes each)."""

_DELETES_PER_TXN = 64  # under etcd's default --max-txn-ops (128)
_APPEND_ATTEMPTS = 5
_READ_ATTEMPTS = 3
_BACKEND = "etcd event log"
_FORMAT = 1

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


def _check_args(after_seq: int, page_size: int | None = None) -> None:
    if after_seq < 0:
        raise InvalidArgument("after_seq", "must not be negative")
    if page_size is not None and page_size <= 0:
        raise InvalidArgument("page_size", "must be positive")


def _check_cursor(after_seq: int, latest: int, floor: int) -> None:
    if after_seq > latest or 0 < after_seq < floor:
        raise StaleEventCursor(after_seq, latest)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _event_id(cursor: int) -> str:
    return f"mob-evt-{cursor}"


@dataclass(frozen=True, slots=True)
class _Batch:
    """One batch as retention sees it, oldest first by ``order``."""

    order: int  # etcd mod revision (etcd log) or first cursor (memory log)
    last: int  # its last cursor
    n: int  # events in it
    time_ms: int  # when it was appended
    key: bytes = b""


def _window_cut(
    batches: Sequence[_Batch], max_age: float | None, max_count: int | None, now_ms: int
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


# -- in memory ------------------------------------------------------------------------


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
        now = _now_ms()
        try:  # private copies, JSON-checked like the etcd log's
            datas = [json.loads(json.dumps(ev.data)) for ev in events]
        except (TypeError, ValueError) as exc:
            raise InvalidArgument("data", f"not JSON-serialisable: {exc}") from exc
        out: list[Envelope] = []
        for ev, data in zip(events, datas, strict=True):
            self._latest += 1
            env = Envelope(
                event_id=_event_id(self._latest),
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
        _check_args(after_seq, page_size)
        _check_cursor(after_seq, self._latest, self._floor)
        return self._after(after_seq, page_size), self._latest

    async def watch(self, after_seq: int) -> AsyncGenerator[Envelope, None]:
        _check_args(after_seq)
        _check_cursor(after_seq, self._latest, self._floor)
        last = after_seq
        while True:
            changed = self._changed
            # A reader that fell behind a trim would silently skip events.
            _check_cursor(last, self._latest, self._floor)
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
        batches = [_Batch(e.cursor, e.cursor, 1, e.timestamp_ms) for e in self._events]
        now = _now_ms() if now_ms is None else now_ms
        cut = _window_cut(batches, max_age, max_count, now)
        more = cut > max_batches
        cut = min(cut, max_batches)
        if cut == 0:
            return TrimReport(floor=self._floor)
        dropped = await self.trim(batches[cut - 1].last)
        return TrimReport(dropped, dropped, self._floor, more)

    async def claim_trim(self, seen: int) -> tuple[bool, int]:
        return True, seen + 1  # one process: no one to race


# -- etcd -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Read:
    events: list[Envelope]
    latest: int
    floor: int
    revision: int  # the store revision the read saw


class EtcdEventLog:
    """The log in etcd (see the module docstring for the layout and cursor rules).

    ``instance`` names this writer in batch keys (default: random); it only has to be
    unique among concurrent writers, never stable.
    """

    def __init__(
        self, client: EtcdClient, prefix: str, mob_id: str, *, instance: str | None = None
    ) -> None:
        keys = self._keys = Keyspace(prefix)
        self.mob_id = mob_id
        self._client = client
        self._events_prefix = keys.events
        self._events_end = prefix_end(self._events_prefix)
        self._head_key = keys.events_head
        self._floor_key = keys.events_floor
        self._trimmer_key = keys.events_trimmer
        self._instance = instance or secrets.token_hex(4)
        self._seq = 0
        self._floor_seen = 0  # the highest floor this object read (it only rises)

    # -- helpers ----------------------------------------------------------------------

    async def _txn(self, request: rpc_pb2.TxnRequest, *, read_only: bool = False) -> Any:
        """Run a txn; etcd failures become BackendUnavailable. Read-only txns are retried
        on UNAVAILABLE (a write might have been applied, so writes retry only where they
        are idempotent)."""
        attempts = _READ_ATTEMPTS if read_only else 1
        for attempt in range(attempts):
            try:
                return await self._client.txn(request)
            except EtcdUnavailable as exc:
                if attempt + 1 == attempts:
                    raise BackendUnavailable(_BACKEND, str(exc)) from exc
            except EtcdError as exc:  # out of space: BACKEND_FULL
                raise backend_error(exc, _BACKEND) from exc
            await asyncio.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def _batch_key(self, n: int) -> bytes:
        # Time first so keys of one writer sort by age; the counter and random suffix
        # make them unique even if the clock steps back; n (events) is for retention.
        self._seq += 1
        unique = f"{time.time_ns():020d}-{self._seq:08d}-{secrets.token_hex(3)}-{n}"
        return self._keys.event_batch(self._instance, unique)

    def _decode(self, kv: kv_pb2.KeyValue) -> list[Envelope]:
        try:
            body = json.loads(kv.value)
            if body.get("v") != _FORMAT:
                raise ValueError(f"unknown format {body.get('v')!r}")
            items = body["events"]
            base = int(kv.mod_revision) * CURSOR_STRIDE
            return [
                Envelope(
                    event_id=_event_id(base + i),
                    cursor=base + i,
                    mob_id=str(item["mob_id"]),
                    timestamp_ms=int(item["timestamp_ms"]),
                    kind=str(item["kind"]),
                    data=item.get("data", {}),
                    run_id=item.get("run_id"),
                    step_id=item.get("step_id"),
                    agent_identity=item.get("agent_identity"),
                    mob_labels=dict(item.get("mob_labels", {})),
                    run_labels=dict(item.get("run_labels", {})),
                )
                for i, item in enumerate(items)
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreCorruption(
                f"undecodable event batch {kv.key.decode(errors='replace')}: {exc}"
            ) from exc

    @staticmethod
    def _meta_int(resp: rpc_pb2.ResponseOp, name: str) -> int:
        kvs = resp.response_range.kvs
        return int(json.loads(kvs[0].value)[name]) if kvs else 0

    def _latest_from(self, resp: rpc_pb2.ResponseOp) -> int:
        kvs = resp.response_range.kvs
        if not kvs:
            return 0
        return int(kvs[0].mod_revision) * CURSOR_STRIDE + int(json.loads(kvs[0].value)["n"]) - 1

    # -- append -------------------------------------------------------------------------

    def _batches(self, events: Sequence[NewEvent]) -> list[list[dict[str, Any]]]:
        now = _now_ms()
        batches: list[list[dict[str, Any]]] = []
        size = 0
        for ev in events:
            item: dict[str, Any] = {
                "mob_id": self.mob_id,
                "timestamp_ms": now,
                "kind": ev.kind,
                "data": ev.data,
            }
            if ev.identity is not None:
                item["agent_identity"] = ev.identity
            try:
                item_size = len(json.dumps(item))
            except (TypeError, ValueError) as exc:
                raise InvalidArgument("data", f"not JSON-serialisable: {exc}") from exc
            if (
                not batches
                or len(batches[-1]) >= MAX_BATCH_EVENTS
                or size + item_size > MAX_BATCH_BYTES
            ):
                batches.append([])
                size = 0
            batches[-1].append(item)
            size += item_size
        return batches

    async def _append_batch(self, items: list[dict[str, Any]]) -> list[Envelope]:
        key = self._batch_key(len(items))
        value = json.dumps({"v": _FORMAT, "events": items}, separators=(",", ":")).encode()
        head = json.dumps({"n": len(items)}).encode()
        # Only-if-absent makes a retry after a lost reply idempotent: the failure branch
        # returns the batch the first attempt wrote, with its revision.
        request = txn_request(
            compare=[compare_create_revision(key, "=", 0)],
            success=[put_op(key, value), put_op(self._head_key, head)],
            failure=[range_op(key)],
        )
        delay = 0.05
        for attempt in range(_APPEND_ATTEMPTS):
            try:
                reply = await self._client.txn(request)
                break
            except EtcdUnavailable as exc:
                if attempt + 1 == _APPEND_ATTEMPTS:
                    raise BackendUnavailable(_BACKEND, str(exc)) from exc
                log.info("event append failed (%s); retrying", exc)
            except EtcdError as exc:  # out of space: BACKEND_FULL
                raise backend_error(exc, _BACKEND) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        if reply.succeeded:
            revision = int(reply.header.revision)
        else:
            revision = int(reply.responses[0].response_range.kvs[0].mod_revision)
        stored = kv_pb2.KeyValue(key=key, value=value, mod_revision=revision)
        return self._decode(stored)

    async def append(self, kind: str, *, identity: str | None, data: dict[str, Any]) -> Envelope:
        return (await self.append_many([NewEvent(kind, identity, data)]))[0]

    async def append_many(self, events: Sequence[NewEvent]) -> builtins.list[Envelope]:
        out: list[Envelope] = []
        for items in self._batches(events):
            out.extend(await self._append_batch(items))
        return out

    # -- read ---------------------------------------------------------------------------

    async def _frontier(self) -> tuple[int, int, int]:
        """(latest cursor, floor, store revision), read atomically."""
        request = txn_request(success=[range_op(self._head_key), range_op(self._floor_key)])
        reply = await self._txn(request, read_only=True)
        floor = self._meta_int(reply.responses[1], "cursor")
        self._floor_seen = max(self._floor_seen, floor)
        return self._latest_from(reply.responses[0]), floor, int(reply.header.revision)

    async def _read(self, after_seq: int, page_size: int) -> _Read:
        """One atomic snapshot: the page, the head and the floor.

        etcd applies ``min_mod_revision`` and the sort after reading the whole prefix, so
        a page costs the etcd server O(batch keys retained): keep the log bounded with
        :meth:`trim`.
        """
        # A trim raises the floor before it deletes: never show what is below it. Events
        # above it are all there (0 reads from the floor; a cursor below it is stale).
        start = max(after_seq, self._floor_seen)
        events_range = rpc_pb2.RangeRequest(
            key=self._events_prefix,
            range_end=self._events_end,
            # The batch holding the start may still have later events: include it.
            min_mod_revision=start // CURSOR_STRIDE,
            sort_order=rpc_pb2.RangeRequest.ASCEND,
            sort_target=rpc_pb2.RangeRequest.MOD,
            # Each batch has >= 1 event and only the first can be wholly <= after_seq,
            # so page_size + 1 batches always fill a page when enough events exist.
            limit=page_size + 1,
        )
        request = txn_request(
            success=[
                rpc_pb2.RequestOp(request_range=events_range),
                range_op(self._head_key),
                range_op(self._floor_key),
            ]
        )
        reply = await self._txn(request, read_only=True)
        latest = self._latest_from(reply.responses[1])
        floor = self._meta_int(reply.responses[2], "cursor")
        _check_cursor(after_seq, latest, floor)
        start = max(after_seq, floor)
        events = [
            env
            for kv in reply.responses[0].response_range.kvs
            for env in self._decode(kv)
            if env.cursor > start
        ]
        if floor > self._floor_seen:
            # The floor rose since this object last saw it: the range began below it, so
            # batches a trim has not deleted yet may have filled the page. Read again.
            self._floor_seen = floor
            if start // CURSOR_STRIDE > events_range.min_mod_revision:
                return await self._read(after_seq, page_size)
        return _Read(events[:page_size], latest, floor, int(reply.header.revision))

    async def list(self, after_seq: int, page_size: int) -> tuple[builtins.list[Envelope], int]:
        _check_args(after_seq, page_size)
        read = await self._read(after_seq, page_size)
        return read.events, read.latest

    async def latest_cursor(self) -> int:
        latest, _, _ = await self._frontier()
        return latest

    async def watch(self, after_seq: int) -> AsyncGenerator[Envelope, None]:
        _check_args(after_seq)
        latest, floor, _ = await self._frontier()
        _check_cursor(after_seq, latest, floor)
        # 0 (or any cursor a trim is still deleting below) starts at the floor.
        last = max(after_seq, floor)
        # The batch holding `last` may still have later events: start at its revision.
        start_revision = max(last // CURSOR_STRIDE, 1)
        while True:
            try:
                # The client's watch re-watches from the last delivered revision + 1 after
                # a member failure or restart; `last` guards against any repeat.
                async for event in self._client.watch(
                    self._events_prefix, self._events_end, start_revision=start_revision
                ):
                    start_revision = int(event.kv.mod_revision) + 1
                    if event.type != kv_pb2.Event.PUT:
                        continue  # a trimmed batch
                    for env in self._decode(event.kv):
                        if env.cursor > last:
                            last = env.cursor
                            yield env
            except EtcdCompacted:
                # etcd's history is gone but the events are not: catch up from the keys,
                # then watch from just after the revision the catch-up read.
                log.info("event watch from revision %d was compacted; catching up", start_revision)
                while True:
                    read = await self._read(last, CATCH_UP_PAGE)
                    for env in read.events:
                        last = env.cursor
                        yield env
                    if len(read.events) < CATCH_UP_PAGE:
                        start_revision = read.revision + 1
                        break
            except EtcdError as exc:  # out of space: BACKEND_FULL
                raise backend_error(exc, _BACKEND) from exc

    # -- retention ------------------------------------------------------------------------

    async def _raise_floor(self, cursor: int) -> int:
        """Raise the floor to at least ``cursor`` (compare-and-swap: it never goes down,
        whoever else raises it meanwhile); returns the floor now stored."""
        while True:
            reply = await self._txn(
                txn_request(success=[range_op(self._floor_key)]), read_only=True
            )
            kvs = reply.responses[0].response_range.kvs
            current = int(json.loads(kvs[0].value)["cursor"]) if kvs else 0
            if current >= cursor:
                return current
            request = txn_request(
                compare=[
                    compare_mod_revision(self._floor_key, "=", kvs[0].mod_revision if kvs else 0)
                ],
                success=[put_op(self._floor_key, json.dumps({"cursor": cursor}))],
            )
            if (await self._txn(request)).succeeded:
                self._floor_seen = max(self._floor_seen, cursor)
                return cursor

    async def _delete(self, keys: Sequence[bytes]) -> None:
        for i in range(0, len(keys), _DELETES_PER_TXN):
            ops = [delete_op(key) for key in keys[i : i + _DELETES_PER_TXN]]
            await self._txn(txn_request(success=ops))  # deletes are idempotent

    async def trim(self, through: int) -> int:
        if through <= 0:
            return 0
        batches = rpc_pb2.RangeRequest(
            key=self._events_prefix,
            range_end=self._events_end,
            max_mod_revision=through // CURSOR_STRIDE,
        )
        reply = await self._txn(
            txn_request(success=[rpc_pb2.RequestOp(request_range=batches)]), read_only=True
        )
        doomed: list[tuple[bytes, int]] = []
        highest = 0
        for kv in reply.responses[0].response_range.kvs:
            events = self._decode(kv)
            if events and events[-1].cursor <= through:  # batches go whole or not at all
                doomed.append((kv.key, len(events)))
                highest = max(highest, events[-1].cursor)
        if not doomed:
            return 0
        # Floor first: no reader may see events gone while the floor still admits them.
        await self._raise_floor(highest)
        await self._delete([key for key, _ in doomed])
        return sum(n for _, n in doomed)

    def _batch_of(self, kv: kv_pb2.KeyValue) -> _Batch | None:
        """A batch key's time and size from its name (None: a name without them)."""
        name = kv.key.rsplit(b"/", 1)[-1].decode(errors="replace").split("-")
        if len(name) != 4 or not (name[0].isdigit() and name[3].isdigit()) or name[3] == "0":
            return None
        n, revision = int(name[3]), int(kv.mod_revision)
        last = revision * CURSOR_STRIDE + n - 1
        return _Batch(revision, last, n, int(name[0]) // 1_000_000, bytes(kv.key))

    async def _read_batches(self, kvs: Sequence[kv_pb2.KeyValue]) -> builtins.list[_Batch]:
        """Batches whose names do not tell their time and size: read their values."""
        out: list[_Batch] = []
        for i in range(0, len(kvs), _DELETES_PER_TXN):
            chunk = kvs[i : i + _DELETES_PER_TXN]
            reply = await self._txn(
                txn_request(success=[range_op(kv.key) for kv in chunk]), read_only=True
            )
            for resp in reply.responses:
                for kv in resp.response_range.kvs:
                    revision = int(kv.mod_revision)
                    try:
                        events = self._decode(kv)
                    except StoreCorruption as exc:
                        # Unreadable anyway: treat it as one old event, so the window
                        # passes over it and a later trim removes it.
                        log.warning("event retention: %s", exc)
                        events = []
                    n = max(1, len(events))
                    when = events[-1].timestamp_ms if events else 0
                    out.append(
                        _Batch(revision, revision * CURSOR_STRIDE + n - 1, n, when, bytes(kv.key))
                    )
        return out

    async def _scan(self) -> builtins.list[_Batch]:
        """Every batch key, oldest first, from one consistent keys-only listing."""
        batches: list[_Batch] = []
        unnamed: list[kv_pb2.KeyValue] = []
        try:
            async for kv in self._client.range_prefix(
                self._events_prefix, SCAN_PAGE, keys_only=True
            ):
                batch = self._batch_of(kv)
                if batch is None:
                    unnamed.append(kv)
                else:
                    batches.append(batch)
        except EtcdError as exc:
            raise BackendUnavailable(_BACKEND, str(exc)) from exc
        batches += await self._read_batches(unnamed)
        batches.sort(key=lambda b: b.order)
        return batches

    async def retain(
        self,
        *,
        max_age: float | None,
        max_count: int | None,
        now_ms: int | None = None,
        max_batches: int = TRIM_MAX_BATCHES,
    ) -> TrimReport:
        now = _now_ms() if now_ms is None else now_ms
        _, floor, _ = await self._frontier()
        # The listing is one snapshot: every batch appended before it is in it, so a
        # cut inside it never passes a batch the plan did not count.
        batches = await self._scan()
        # Left by a trim that raised the floor and stopped before it deleted.
        below = [b for b in batches if b.last <= floor][:max_batches]
        live = [b for b in batches if b.last > floor]
        cut = _window_cut(live, max_age, max_count, now)
        budget = max_batches - len(below)
        more = cut > budget or len(below) == max_batches
        cut = max(0, min(cut, budget))
        doomed = below + live[:cut]
        if not doomed:
            return TrimReport(floor=floor)
        if cut:
            # Floor first: no reader may see events gone while the floor admits them.
            floor = await self._raise_floor(live[cut - 1].last)
        await self._delete([b.key for b in doomed])
        return TrimReport(len(doomed), sum(b.n for b in doomed), floor, more)

    async def claim_trim(self, seen: int) -> tuple[bool, int]:
        body = json.dumps({"by": self._instance, "at_ms": _now_ms()}).encode()
        request = txn_request(
            compare=[compare_version(self._trimmer_key, "=", seen)],
            success=[put_op(self._trimmer_key, body)],
            failure=[range_op(self._trimmer_key)],
        )
        reply = await self._txn(request)
        if reply.succeeded:
            return True, seen + 1
        kvs = reply.responses[0].response_range.kvs
        return False, int(kvs[0].version) if kvs else 0
