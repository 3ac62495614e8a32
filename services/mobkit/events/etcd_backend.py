"""The event log in etcd: shared by every replica on one etcd, it survives restarts.

Keys are :mod:`mobkit.events.keys`'s, values and cursors :mod:`mobkit.events.etcd_codec`'s.

* ``<prefix>/events-meta/head`` is rewritten by every append: its ``mod_revision`` and
  its ``n`` give the latest cursor in one key read.
* ``<prefix>/events-meta/floor`` is only ever raised, by a compare-and-swap, before any
  batch below it is deleted: concurrent trimmers are harmless (each deletes only
  batches at or below the floor it raised, and a window never moves backwards, so a
  plan made earlier never cuts into a later window).
* ``<prefix>/events-meta/trimmer``: replicas claim each retention round with a CAS on
  its version (the Kubernetes API server's compactor does the same), so normally one
  replica per interval does the work.

etcd compaction (of its MVCC history) loses no event — batch keys are never
overwritten — so a watch whose start revision was compacted catches up by ranging
over the keys instead, then watches again: compaction never makes a cursor stale.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import secrets
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

from mobkit.core.errors import BackendUnavailable, StoreCorruption
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.errors import EtcdCompacted, EtcdError, EtcdUnavailable, backend_error
from mobkit.etcd.ops import (
    compare_create_revision,
    compare_mod_revision,
    compare_version,
    delete_op,
    put_op,
    range_op,
    txn_request,
)
from mobkit.events import etcd_codec as codec
from mobkit.events.domain import (
    TRIM_MAX_BATCHES,
    Batch,
    Envelope,
    NewEvent,
    TrimReport,
    check_args,
    check_cursor,
    wall_clock_ms,
    window_cut,
)
from mobkit.events.keys import EventKeys
from mobkit.gen.etcd.api.etcdserverpb import rpc_pb2
from mobkit.gen.etcd.api.mvccpb import kv_pb2

# The name the log had inside the orchestrator: operators' logging config keeps working.
log = logging.getLogger("mobkit.orchestrator.events")

CATCH_UP_PAGE = 256
"""Batch keys per range while a watch catches up after etcd compaction."""

SCAN_PAGE = 1000
"""Keys per range while retention lists the batch keys (keys only, ~100 bytes each)."""

_DELETES_PER_TXN = 64  # under etcd's default --max-txn-ops (128)
_APPEND_ATTEMPTS = 5
_READ_ATTEMPTS = 3
_BACKEND = "etcd event log"


@dataclass(frozen=True, slots=True)
class _Read:
    events: list[Envelope]
    latest: int
    floor: int
    revision: int  # the store revision the read saw


class EtcdEventLog:
    """The log in etcd (layout: the module docstring; cursor rules: ``events.domain``).

    ``instance`` names this writer in batch keys (default: random); it only has to be
    unique among concurrent writers, never stable.
    """

    def __init__(
        self, client: EtcdClient, prefix: str, mob_id: str, *, instance: str | None = None
    ) -> None:
        self.mob_id = mob_id
        self._client = client
        self._keys = EventKeys.under(prefix)
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

    # -- append -------------------------------------------------------------------------

    async def _append_batch(self, items: list[dict[str, Any]]) -> list[Envelope]:
        self._seq += 1
        key = self._keys.batch(self._instance, codec.batch_name(self._seq, len(items)))
        value = codec.encode(items)
        head = codec.encode_head(len(items))
        # Only-if-absent makes a retry after a lost reply idempotent: the failure branch
        # returns the batch the first attempt wrote, with its revision.
        request = txn_request(
            compare=[compare_create_revision(key, "=", 0)],
            success=[put_op(key, value), put_op(self._keys.head, head)],
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
        return codec.decode(stored)

    async def append(self, kind: str, *, identity: str | None, data: dict[str, Any]) -> Envelope:
        return (await self.append_many([NewEvent(kind, identity, data)]))[0]

    async def append_many(self, events: Sequence[NewEvent]) -> builtins.list[Envelope]:
        out: list[Envelope] = []
        for items in codec.split(events, self.mob_id):
            out.extend(await self._append_batch(items))
        return out

    # -- read ---------------------------------------------------------------------------

    async def _frontier(self) -> tuple[int, int, int]:
        """(latest cursor, floor, store revision), read atomically."""
        request = txn_request(success=[range_op(self._keys.head), range_op(self._keys.floor)])
        reply = await self._txn(request, read_only=True)
        floor = codec.meta_int(reply.responses[1], "cursor")
        self._floor_seen = max(self._floor_seen, floor)
        return codec.latest_from(reply.responses[0]), floor, int(reply.header.revision)

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
            key=self._keys.batches,
            range_end=self._keys.batches_end,
            # The batch holding the start may still have later events: include it.
            min_mod_revision=start // codec.CURSOR_STRIDE,
            sort_order=rpc_pb2.RangeRequest.ASCEND,
            sort_target=rpc_pb2.RangeRequest.MOD,
            # Each batch has >= 1 event and only the first can be wholly <= after_seq,
            # so page_size + 1 batches always fill a page when enough events exist.
            limit=page_size + 1,
        )
        request = txn_request(
            success=[
                rpc_pb2.RequestOp(request_range=events_range),
                range_op(self._keys.head),
                range_op(self._keys.floor),
            ]
        )
        reply = await self._txn(request, read_only=True)
        latest = codec.latest_from(reply.responses[1])
        floor = codec.meta_int(reply.responses[2], "cursor")
        check_cursor(after_seq, latest, floor)
        start = max(after_seq, floor)
        events = [
            env
            for kv in reply.responses[0].response_range.kvs
            for env in codec.decode(kv)
            if env.cursor > start
        ]
        if floor > self._floor_seen:
            # The floor rose since this object last saw it: the range began below it, so
            # batches a trim has not deleted yet may have filled the page. Read again.
            self._floor_seen = floor
            if start // codec.CURSOR_STRIDE > events_range.min_mod_revision:
                return await self._read(after_seq, page_size)
        return _Read(events[:page_size], latest, floor, int(reply.header.revision))

    async def list(self, after_seq: int, page_size: int) -> tuple[builtins.list[Envelope], int]:
        check_args(after_seq, page_size)
        read = await self._read(after_seq, page_size)
        return read.events, read.latest

    async def latest_cursor(self) -> int:
        latest, _, _ = await self._frontier()
        return latest

    async def watch(self, after_seq: int) -> AsyncGenerator[Envelope, None]:
        check_args(after_seq)
        latest, floor, _ = await self._frontier()
        check_cursor(after_seq, latest, floor)
        # 0 (or any cursor a trim is still deleting below) starts at the floor.
        last = max(after_seq, floor)
        # The batch holding `last` may still have later events: start at its revision.
        start_revision = max(last // codec.CURSOR_STRIDE, 1)
        while True:
            try:
                # The client's watch re-watches from the last delivered revision + 1 after
                # a member failure or restart; `last` guards against any repeat.
                async for event in self._client.watch(
                    self._keys.batches, self._keys.batches_end, start_revision=start_revision
                ):
                    start_revision = int(event.kv.mod_revision) + 1
                    if event.type != kv_pb2.Event.PUT:
                        continue  # a trimmed batch
                    for env in codec.decode(event.kv):
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
                txn_request(success=[range_op(self._keys.floor)]), read_only=True
            )
            kvs = reply.responses[0].response_range.kvs
            current = int(json.loads(kvs[0].value)["cursor"]) if kvs else 0
            if current >= cursor:
                return current
            request = txn_request(
                compare=[
                    compare_mod_revision(self._keys.floor, "=", kvs[0].mod_revision if kvs else 0)
                ],
                success=[put_op(self._keys.floor, json.dumps({"cursor": cursor}))],
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
            key=self._keys.batches,
            range_end=self._keys.batches_end,
            max_mod_revision=through // codec.CURSOR_STRIDE,
        )
        reply = await self._txn(
            txn_request(success=[rpc_pb2.RequestOp(request_range=batches)]), read_only=True
        )
        doomed: list[tuple[bytes, int]] = []
        highest = 0
        for kv in reply.responses[0].response_range.kvs:
            events = codec.decode(kv)
            if events and events[-1].cursor <= through:  # batches go whole or not at all
                doomed.append((kv.key, len(events)))
                highest = max(highest, events[-1].cursor)
        if not doomed:
            return 0
        # Floor first: no reader may see events gone while the floor still admits them.
        await self._raise_floor(highest)
        await self._delete([key for key, _ in doomed])
        return sum(n for _, n in doomed)

    async def _read_batches(self, kvs: Sequence[kv_pb2.KeyValue]) -> builtins.list[Batch]:
        """Batches whose names do not tell their time and size: read their values."""
        out: list[Batch] = []
        for i in range(0, len(kvs), _DELETES_PER_TXN):
            chunk = kvs[i : i + _DELETES_PER_TXN]
            reply = await self._txn(
                txn_request(success=[range_op(kv.key) for kv in chunk]), read_only=True
            )
            for resp in reply.responses:
                for kv in resp.response_range.kvs:
                    revision = int(kv.mod_revision)
                    try:
                        events = codec.decode(kv)
                    except StoreCorruption as exc:
                        # Unreadable anyway: treat it as one old event, so the window
                        # passes over it and a later trim removes it.
                        log.warning("event retention: %s", exc)
                        events = []
                    n = max(1, len(events))
                    when = events[-1].timestamp_ms if events else 0
                    out.append(
                        Batch(
                            revision, revision * codec.CURSOR_STRIDE + n - 1, n, when, bytes(kv.key)
                        )
                    )
        return out

    async def _scan(self) -> builtins.list[Batch]:
        """Every batch key, oldest first, from one consistent keys-only listing."""
        batches: list[Batch] = []
        unnamed: list[kv_pb2.KeyValue] = []
        try:
            async for kv in self._client.range_prefix(
                self._keys.batches, SCAN_PAGE, keys_only=True
            ):
                batch = codec.batch_of(kv)
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
        now = wall_clock_ms() if now_ms is None else now_ms
        _, floor, _ = await self._frontier()
        # The listing is one snapshot: every batch appended before it is in it, so a
        # cut inside it never passes a batch the plan did not count.
        batches = await self._scan()
        # Left by a trim that raised the floor and stopped before it deleted.
        below = [b for b in batches if b.last <= floor][:max_batches]
        live = [b for b in batches if b.last > floor]
        cut = window_cut(live, max_age, max_count, now)
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
        body = json.dumps({"by": self._instance, "at_ms": wall_clock_ms()}).encode()
        request = txn_request(
            compare=[compare_version(self._keys.trimmer, "=", seen)],
            success=[put_op(self._keys.trimmer, body)],
            failure=[range_op(self._keys.trimmer)],
        )
        reply = await self._txn(request)
        if reply.succeeded:
            return True, seen + 1
        kvs = reply.responses[0].response_range.kvs
        return False, int(kvs[0].version) if kvs else 0
