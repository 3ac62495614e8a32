"""etcd engine: records and snapshots under ``<prefix>/continuity/``
(:class:`~mobkit.core.keyspace.Keyspace` gives every key, the lease fence's too).

A write commits with ONE txn that compares the ``mod_revision`` of every key its plan
read; a conflicting writer makes the compare fail and the operation is decided again on
fresh state (CAS loop). The txn's failure branch reads those keys back, so a retry costs
no extra round trip.

Fencing against the lease service (``lease_fence``, on by default when both share an
etcd): the same txn also requires ``create_revision(<prefix>/leases/<identity>)`` to be
the presented token, so a writer whose lease was lost or re-acquired by someone else
cannot write even if no newer owner has written yet.

Write plans read through a small cache of what this engine last saw of each key (value
and revision; records, session bindings and lease keys, never large values). That is
safe because the commit compares every key read: a stale entry only fails the txn,
whose failure branch refreshes it. A steady stream of saves thus costs one round trip
each. Refusals are never based on cached values: a plan that refuses is re-run on fresh
reads first. Read-only operations never use the cache; their reads are linearizable,
and all reads of one operation are pinned to one revision, so a record and its snapshot
are always seen together.

Large snapshots are chunked (:mod:`mobkit.continuity.chunking`): the snapshot key holds
a manifest, and the chunks a save adds usually ride in its one txn. When they do not fit
etcd's request limits (``--max-request-bytes``, 1.5 MiB, and ``--max-txn-ops``, 128, by
default) they are written first, in txns carrying the same compares, and the manifest
commits after them; chunks the new manifest drops are deleted in the same txn or, when
too many, by follow-up txns that compare and rewrite the record (see
:mod:`mobkit.continuity.operations`). A crash between those steps leaves unreferenced
chunks, collected by :meth:`PlanStore.collect_garbage` (scheduled on the next activation).

Receipts are put with an etcd lease per time bucket (``retention / 24`` wide, one
grant per bucket per process): the lease expires a bucket's width after the retention of
its last receipt, and etcd deletes the receipts with it.

Batch reads (``resolve_many``) put up to ``max_txn_ops`` (etcd's ``--max-txn-ops``,
128 by default) range operations in one read-only txn: 10,000 identities cost about
2 x 10,000 / 128 round trips (records, then their snapshots), issued concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from mobkit.continuity.chunking import MAX_CHUNK_BYTES, MAX_TAIL_PIECES, MIN_CHUNK_BYTES
from mobkit.continuity.codec import RECORDS
from mobkit.continuity.domain import (
    DEFAULT_RECEIPT_RETENTION_SECONDS,
    DEFAULT_SNAPSHOT_LIMIT_BYTES,
    MAX_RECEIPT_BYTES,
)
from mobkit.continuity.operations import Commit, Plan, PlanStore, Read, ReadResult, StoredValue
from mobkit.continuity.rules import Unreadable
from mobkit.core.errors import BackendFull, InvalidArgument, MobKitError, StoreUnavailable
from mobkit.core.identity import AgentIdentity
from mobkit.core.keyspace import Keyspace
from mobkit.core.types import DurabilityPolicy, SyncWriteThrough
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.errors import (
    EtcdCompacted,
    EtcdError,
    EtcdLeaseNotFound,
    EtcdNoSpace,
    EtcdUnavailable,
)
from mobkit.etcd.ops import (
    compare_mod_revision,
    delete_op,
    prefix_end,
    put_op,
    range_op,
    txn_request,
)
from mobkit.etcd.retention_leases import RetentionLeases
from mobkit.gen.etcd.api.etcdserverpb import rpc_pb2
from mobkit.gen.etcd.api.mvccpb import kv_pb2
from mobkit.lease.etcd_fence import fence_compare

T = TypeVar("T")

log = logging.getLogger(__name__)

ETCD_DEFAULT_MAX_REQUEST_BYTES = 1536 * 1024
ETCD_DEFAULT_MAX_TXN_OPS = 128
REQUEST_OVERHEAD_BYTES = 64 * 1024
"""Room a save txn needs besides the values it puts (record, header, keys, compares)."""
MANIFEST_ENTRY_BYTES = 36

DEFAULT_MAX_ATTEMPTS = 200
DEFAULT_READ_CONCURRENCY = 8
DEFAULT_CACHE_ENTRIES = 4096
DEFAULT_CACHE_BYTES = 32 * 1024 * 1024
CACHEABLE_VALUE_BYTES = 128 * 1024
"""Records, bindings, lease keys, small snapshots and manifests (up to ~3,600 chunks)."""
RECEIPT_BUCKETS = 24
"""Receipt leases per retention period: a receipt outlives its retention by at most
``retention / RECEIPT_BUCKETS``."""
DEFAULT_INFLIGHT_TXNS = 1
"""Commit txns in flight at once; commits that arrive meanwhile wait and go together."""
GROUP_MAX = 64
"""Commits per grouped txn (etcd's ``--max-txn-ops`` bounds it further)."""
GROUP_KEY_BYTES = 64
"""Room counted per compare or op of a grouped commit besides the values it puts."""


@dataclass(frozen=True, slots=True)
class Seen:
    """A key as last seen: its value (None: absent) and the revision a commit compares
    (``mod_revision``; for lease keys ``create_revision``; 0 when absent)."""

    value: bytes | None
    revision: int


_Fetched = Seen | Unreadable


@dataclass(slots=True)
class _Queued:
    """A commit txn waiting to be sent in a group (see ``_group_txn``)."""

    request: rpc_pb2.TxnRequest
    keys: set[bytes]
    """Every key it compares, reads, puts or deletes: commits grouped together share none."""
    ops: int
    size: int
    future: asyncio.Future[tuple[rpc_pb2.TxnResponse, int]]


class _SeenCache:
    """LRU of keys as this engine last saw them, for write plans only; bounded in entries
    and in bytes."""

    def __init__(self, capacity: int, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[bytes, Seen] = OrderedDict()

    @staticmethod
    def _size(key: bytes, seen: Seen) -> int:
        return len(key) + (len(seen.value) if seen.value is not None else 0)

    def get(self, key: bytes) -> Seen | None:
        seen = self._entries.get(key)
        if seen is not None:
            self._entries.move_to_end(key)
        return seen

    def put(self, key: bytes, seen: Seen) -> None:
        self._pop(key)
        if seen.value is not None and len(seen.value) > CACHEABLE_VALUE_BYTES:
            return
        self._entries[key] = seen
        self._bytes += self._size(key, seen)
        while len(self._entries) > self._capacity or self._bytes > self._max_bytes:
            old_key, old = self._entries.popitem(last=False)
            self._bytes -= self._size(old_key, old)

    def _pop(self, key: bytes) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= self._size(key, old)

    def drop(self, keys: Iterable[bytes]) -> None:
        for key in keys:
            self._pop(key)

    def drop_prefix(self, prefix: bytes) -> None:
        self.drop([k for k in self._entries if k.startswith(prefix)])


class EtcdContinuityStore(PlanStore):
    def __init__(
        self,
        client: EtcdClient,
        *,
        prefix: str = "/mobkit",
        lease_fence: bool = True,
        snapshot_limit_bytes: int = DEFAULT_SNAPSHOT_LIMIT_BYTES,
        receipt_retention: float = DEFAULT_RECEIPT_RETENTION_SECONDS,
        clock: Callable[[], float] = time.time,
        max_request_bytes: int = ETCD_DEFAULT_MAX_REQUEST_BYTES,
        max_txn_ops: int = ETCD_DEFAULT_MAX_TXN_OPS,
        read_concurrency: int = DEFAULT_READ_CONCURRENCY,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
    ) -> None:
        super().__init__(
            snapshot_limit_bytes=snapshot_limit_bytes,
            receipt_retention=receipt_retention,
            clock=clock,
        )
        # The one value that cannot be split: a manifest (one entry per chunk of at least
        # MIN_CHUNK_BYTES, and the tail's pieces), with the record and a receipt, in one txn.
        entries = snapshot_limit_bytes // MIN_CHUNK_BYTES + MAX_TAIL_PIECES
        manifest = entries * MANIFEST_ENTRY_BYTES
        needed = manifest + MAX_RECEIPT_BYTES + MAX_CHUNK_BYTES + REQUEST_OVERHEAD_BYTES
        if needed > max_request_bytes:
            raise InvalidArgument(
                "snapshot_limit_bytes",
                f"a {snapshot_limit_bytes}-byte snapshot needs etcd requests of {needed} "
                f"bytes (its manifest, a receipt and overhead); etcd allows "
                f"{max_request_bytes} (--max-request-bytes)",
            )
        if max_txn_ops < 8:
            raise InvalidArgument("max_txn_ops", "must be at least 8")
        self.client = client
        self.keyspace = Keyspace(prefix)
        self.namespace = self.keyspace.continuity
        self.lease_fence = lease_fence
        self.max_txn_ops = max_txn_ops
        self._value_budget = max_request_bytes - REQUEST_OVERHEAD_BYTES
        self._read_slots = asyncio.Semaphore(read_concurrency)
        self._max_attempts = max_attempts
        self._cache = _SeenCache(cache_entries)
        self._receipt_leases = RetentionLeases(
            client,
            lambda: self.receipt_retention,
            buckets=RECEIPT_BUCKETS,
            clock_ms=self._now_ms,
        )
        self.max_inflight_txns = DEFAULT_INFLIGHT_TXNS
        self.grouped_txns = 0
        """Commit txns that carried more than one commit (benchmarks and tests read it)."""
        self._inflight = 0
        self._queued: list[_Queued] = []
        self._senders: set[asyncio.Task[None]] = set()

    @property
    def durability_policy(self) -> DurabilityPolicy:
        return SyncWriteThrough()  # acknowledged = committed by a quorum

    def etcd_key(self, key: bytes) -> bytes:
        """The etcd key of a logical key (tests and tools use it)."""
        return self.keyspace.continuity_key(key)

    def lease_key(self, identity: str) -> bytes:
        return self.keyspace.lease(identity)

    def is_lease_key(self, key: bytes) -> bool:
        return self.keyspace.is_lease(key)

    async def _execute(self, make_plan: Callable[[], Plan[T]], *, writes: bool) -> T:
        cached = writes
        for attempt in range(self._max_attempts):
            reader = _Reader(self, self._cache if cached else None, track=writes)
            try:
                try:
                    commit = await self._run(make_plan(), reader)
                except MobKitError:
                    if not reader.used_cache:
                        raise
                    # A refusal must rest on fresh reads, not on what we cached.
                    self._cache.drop(reader.seen)
                    cached = False
                    continue
                if not commit.writes and not reader.used_cache:
                    return commit.result
                # Writes, or a no-op decided on cached reads (which an empty txn with
                # the same compares confirms).
                if await self._commit(commit, reader):
                    return commit.result
            except EtcdCompacted:
                pass  # the pinned revision was compacted away: read again
            except EtcdLeaseNotFound:
                self._receipt_leases.forget()  # a bucket's lease expired early: grant anew
            except EtcdNoSpace as exc:
                self._cache.drop(reader.seen)
                raise BackendFull(str(exc), backend="etcd") from exc
            except EtcdError as exc:
                self._cache.drop(reader.seen)  # a failed commit may or may not have applied
                if isinstance(exc, EtcdUnavailable):
                    raise StoreUnavailable(str(exc), backend="etcd") from exc
                raise StoreUnavailable(f"etcd refused the request: {exc}", backend="etcd") from exc
            if attempt:  # spread out writers that keep colliding
                await asyncio.sleep(random.uniform(0, min(0.05, 0.0005 * 2**attempt)))
        raise StoreUnavailable(
            f"gave up after {self._max_attempts} conflicting attempts", backend="etcd"
        )

    async def _run(self, plan: Plan[T], reader: _Reader) -> Commit[T]:
        try:
            request = next(plan)
            while True:
                request = plan.send(await reader.read(request))
        except StopIteration as stop:
            commit: Commit[T] = stop.value
            return commit
        finally:
            plan.close()

    async def _commit(self, commit: Commit[T], reader: _Reader) -> bool:
        """One txn: every key read unchanged (lease keys: still the same holder's), then
        the writes. On a conflict, the failure branch reads the keys back into the cache
        and this returns False. Chunks that do not fit go before it (same compares) and
        garbage that does not fit after it (guarded by the record)."""
        ns = self.namespace
        read_keys = list(reader.seen)
        compares = [
            fence_compare(self.keyspace, self.keyspace.lease_identity(k), seen.revision)
            if self.is_lease_key(k)
            else compare_mod_revision(k, "=", seen.revision)
            for k, seen in reader.seen.items()
        ]
        failure = [range_op(k) for k in read_keys]
        puts = dict(commit.puts)
        guard = ns + commit.guard if commit.guard is not None else None
        if commit.garbage and commit.guard is not None and commit.guard not in puts:
            seen_guard = reader.seen.get(guard) if guard is not None else None
            if seen_guard is not None and seen_guard.value is not None:
                puts[commit.guard] = seen_guard.value  # rewritten: see module docstring
        success = [delete_op(ns + p, prefix_end(ns + p)) for p in commit.delete_prefixes]
        success += [delete_op(ns + k) for k in commit.deletes]
        success += [put_op(ns + k, v) for k, v in puts.items()]
        for key, (value, deadline) in commit.expiring.items():
            lease = await self._receipt_leases.until(deadline)
            success.append(put_op(ns + key, value, lease=lease))
        size = sum(len(k) + len(v) for k, v in puts.items())
        size += sum(len(k) + len(v) for k, (v, _) in commit.expiring.items())
        staged = list(commit.staged.items())
        staged_size = sum(len(k) + len(v) for k, v in staged)
        if len(success) + len(staged) <= self.max_txn_ops and size + staged_size <= (
            self._value_budget
        ):
            success += [put_op(ns + k, v) for k, v in staged]
            size += staged_size
        else:
            for batch in self._batches(staged, self.max_txn_ops, self._value_budget):
                ops = [put_op(ns + k, v) for k, v in batch]
                if await self._txn_or_refresh(compares, ops, failure, read_keys) is None:
                    return False
                self.bytes_written += sum(len(k) + len(v) for k, v in batch)
        garbage = list(commit.garbage)
        room = self.max_txn_ops - len(success)
        if len(garbage) <= room:
            success += [delete_op(ns + k) for k in garbage]
            garbage = []
        # Commits without range deletes may share a txn with others (group commit).
        group_keys = None
        if not commit.delete_prefixes:
            group_keys = {*read_keys, *(ns + k for k in puts), *(ns + k for k in commit.deletes)}
            group_keys.update(ns + k for k in commit.expiring)
            group_keys.update(ns + k for k in commit.staged)  # whether or not inline
            group_keys.update(ns + k for k in commit.garbage)
        revision = await self._txn_or_refresh(
            compares, success, failure, read_keys, group_keys=group_keys, size=size
        )
        if revision is None:
            return False
        self.bytes_written += size
        for key, seen in reader.seen.items():
            self._cache.put(key, seen)
        for prefix in commit.delete_prefixes:
            self._cache.drop_prefix(ns + prefix)
        for key in commit.deletes:
            self._cache.put(ns + key, Seen(None, 0))
        for key, value in puts.items():
            self._cache.put(ns + key, Seen(value, revision))
        if garbage:
            guard_value = puts.get(commit.guard) if commit.guard is not None else None
            await self._delete_garbage(commit.guard, guard_value, revision, garbage)
        return True

    @staticmethod
    def _batches(
        items: list[tuple[bytes, bytes]], max_ops: int, max_bytes: int
    ) -> Iterable[list[tuple[bytes, bytes]]]:
        batch: list[tuple[bytes, bytes]] = []
        size = 0
        for key, value in items:
            item = len(key) + len(value)
            if batch and (len(batch) >= max_ops or size + item > max_bytes):
                yield batch
                batch, size = [], 0
            batch.append((key, value))
            size += item
        if batch:
            yield batch

    async def _txn_or_refresh(
        self,
        compares: list[rpc_pb2.Compare],
        success: list[rpc_pb2.RequestOp],
        failure: list[rpc_pb2.RequestOp],
        read_keys: list[bytes],
        *,
        group_keys: set[bytes] | None = None,
        size: int = 0,
    ) -> int | None:
        """The txn's revision, or None (and the cache refreshed) if a compare failed.
        With ``group_keys`` (every key the txn touches) it may go to etcd nested in one
        txn with other commits (see :meth:`_group_txn`)."""
        request = txn_request(compares, success, failure)
        if group_keys is None:
            reply = await self.client.txn(request)
            revision = int(reply.header.revision)
        else:
            reply, revision = await self._group_txn(request, group_keys, size)
        if not reply.succeeded:
            for key, response in zip(read_keys, reply.responses, strict=True):
                self._cache.put(key, self._seen(key, response.response_range.kvs))
            return None
        return revision

    # -- group commit -----------------------------------------------------------------

    async def _group_txn(
        self, request: rpc_pb2.TxnRequest, keys: set[bytes], size: int
    ) -> tuple[rpc_pb2.TxnResponse, int]:
        """Send a commit txn; ``(its response, the revision it committed at)``.

        While ``max_inflight_txns`` commit txns are in flight, commits wait, and then go
        to etcd together: each as a nested txn (``RequestOp.request_txn``) of one outer
        txn without compares. etcd decides every nested txn on its own compares (all
        evaluated before any write of the outer txn, and the grouped commits share no
        key), so each commit succeeds or fails exactly as it would alone, in one round
        trip and one raft entry for all. Nothing is acknowledged before that txn
        committed. A lone commit (one writer) goes at once, as a plain txn."""
        if self._inflight < self.max_inflight_txns and not self._queued:
            self._inflight += 1
            try:
                reply = await self.client.txn(request)
            finally:
                self._inflight -= 1
                self._send_queued()
            return reply, int(reply.header.revision)
        ops = max(len(request.compare), len(request.success), len(request.failure))
        size += GROUP_KEY_BYTES * (len(request.compare) + len(request.success) + ops)
        future: asyncio.Future[tuple[rpc_pb2.TxnResponse, int]] = (
            asyncio.get_running_loop().create_future()
        )
        self._queued.append(_Queued(request, keys, ops, size, future))
        self._send_queued()
        return await future

    def _send_queued(self) -> None:
        while self._queued and self._inflight < self.max_inflight_txns:
            batch = self._take_group()
            if not batch:
                continue
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(
                self._send_group(batch), name="continuity-group-commit"
            )
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)

    def _take_group(self) -> list[_Queued]:
        """The next group from the queue, in order: commits sharing no key with an
        earlier one, within etcd's limits (``--max-txn-ops`` counts a nested txn's ops
        against what its parent leaves, ``--max-request-bytes`` the whole request)."""
        group: list[_Queued] = []
        rest: list[_Queued] = []
        taken: set[bytes] = set()
        blocked: set[bytes] = set()
        size = widest = 0
        for item in self._queued:
            if item.future.done():  # its caller gave up before it was sent
                continue
            n = len(group) + 1
            if group and (
                n > GROUP_MAX
                or size + item.size > self._value_budget
                or max(widest, item.ops) > self.max_txn_ops - n
                or not taken.isdisjoint(item.keys)
                or not blocked.isdisjoint(item.keys)
            ):
                rest.append(item)
                blocked |= item.keys  # later commits of the same keys stay behind it
                continue
            group.append(item)
            taken |= item.keys
            size += item.size
            widest = max(widest, item.ops)
        self._queued = rest
        return group

    async def _alone(self, item: _Queued) -> tuple[rpc_pb2.TxnResponse, int] | BaseException:
        try:
            reply = await self.client.txn(item.request)
        except EtcdError as exc:
            return exc
        return reply, int(reply.header.revision)

    async def _send_group(self, group: list[_Queued]) -> None:
        outcomes: list[tuple[rpc_pb2.TxnResponse, int] | BaseException] = []
        try:
            if len(group) == 1:
                outcomes = [await self._alone(group[0])]
            else:
                request = txn_request(
                    success=[rpc_pb2.RequestOp(request_txn=item.request) for item in group]
                )
                try:
                    reply = await self.client.txn(request)
                except (EtcdUnavailable, EtcdNoSpace) as exc:
                    outcomes = [exc] * len(group)  # as each would have fared alone
                except EtcdError:
                    # Refused as a whole, so nothing applied (a receipt lease that
                    # expired, ...): each commit on its own, to fail only those at fault.
                    outcomes = list(await asyncio.gather(*(self._alone(i) for i in group)))
                else:
                    self.grouped_txns += 1
                    revision = int(reply.header.revision)
                    outcomes = [(op.response_txn, revision) for op in reply.responses]
        finally:
            self._inflight -= 1
            for index, item in enumerate(group):
                if item.future.done():
                    continue
                if index >= len(outcomes):  # cancelled (loop closing): outcome unknown
                    item.future.set_exception(EtcdUnavailable("commit txn cancelled"))
                    continue
                outcome = outcomes[index]
                if isinstance(outcome, BaseException):
                    item.future.set_exception(outcome)
                else:
                    item.future.set_result(outcome)
            self._send_queued()

    async def _delete_garbage(
        self, guard: bytes | None, value: bytes | None, revision: int, garbage: list[bytes]
    ) -> None:
        """Delete chunks no longer referenced, a txn at a time, each requiring the record
        (``guard``) to be as this engine last wrote it (``value`` at ``revision``) and
        rewriting it. If someone else wrote it meanwhile, what is left waits for a
        collection. Without a guard (no record, so no save can race) no compare."""
        ns = self.namespace
        identity = AgentIdentity(guard[len(RECORDS) :].decode()) if guard is not None else None
        step = self.max_txn_ops - 1
        for start in range(0, len(garbage), step):
            ops = [delete_op(ns + k) for k in garbage[start : start + step]]
            compares = []
            if guard is not None:
                if value is None:
                    break
                compares = [compare_mod_revision(ns + guard, "=", revision)]
                ops.append(put_op(ns + guard, value))
            try:
                reply = await self.client.txn(txn_request(compares, ops))
            except EtcdError as exc:
                log.warning("%s: deleting unreferenced chunks failed: %s", identity, exc)
                break
            if not reply.succeeded:
                break
            revision = int(reply.header.revision)
            if guard is not None:
                self._cache.put(ns + guard, Seen(value, revision))
        else:
            return
        if identity is not None:
            if guard is not None:
                self._cache.drop([ns + guard])
            self.schedule_collection(identity)

    def _seen(self, key: bytes, kvs: Sequence[kv_pb2.KeyValue]) -> Seen:
        if not kvs:
            return Seen(None, 0)
        kv = kvs[0]
        revision = kv.create_revision if self.is_lease_key(key) else kv.mod_revision
        return Seen(bytes(kv.value), int(revision))

    async def range_at(self, keys: Sequence[bytes], revision: int) -> rpc_pb2.TxnResponse:
        """Read ``keys`` in one read-only txn at ``revision`` (0: now, linearizable)."""
        async with self._read_slots:
            try:
                return await self.client.txn(
                    txn_request(
                        success=[
                            rpc_pb2.RequestOp(
                                request_range=rpc_pb2.RangeRequest(key=k, revision=revision)
                            )
                            for k in keys
                        ]
                    )
                )
            except EtcdNoSpace:
                # Over its quota etcd refuses every txn, even read-only ones, but still
                # serves ranges: reads (resolve, load, a rewind) keep working while full.
                return await self._ranges_at(keys, revision)

    async def _ranges_at(self, keys: Sequence[bytes], revision: int) -> rpc_pb2.TxnResponse:
        """What ``range_at`` answers, from one range per key, all at one revision."""
        reply = rpc_pb2.TxnResponse(succeeded=True)
        for key in keys:
            found = await self.client.range(key, revision=revision)
            if revision == 0:
                revision = int(found.header.revision)
                reply.header.CopyFrom(found.header)
            reply.responses.add().response_range.CopyFrom(found)
        if not keys:
            reply.header.revision = revision
        return reply


class _Reader:
    """The reads of one plan run. Fetched keys are all read at the revision of the first
    fetch; write plans may take keys from the cache and record everything they saw."""

    def __init__(
        self, store: EtcdContinuityStore, cache: _SeenCache | None, *, track: bool
    ) -> None:
        self._store = store
        self._cache = cache
        self._track = track
        self.revision = 0
        self.used_cache = False
        self.seen: dict[bytes, Seen] = {}

    async def read(self, request: Read) -> ReadResult:
        store = self._store
        keys = [store.namespace + k for k in request.keys]
        lease_key = (
            store.lease_key(request.lease_of)
            if request.lease_of is not None and store.lease_fence
            else None
        )
        wanted = [*keys, lease_key] if lease_key is not None else keys
        found: dict[bytes, _Fetched] = {}
        if self._cache is not None:
            for key in wanted:
                seen = self._cache.get(key)
                if seen is not None:
                    found[key] = seen
                    self.used_cache = True
            # Guesses, like cached values, are checked by the commit's compares; a wrong
            # one fails the commit, whose failure branch caches the real values, so the
            # next attempt uses those and never guesses the same key twice.
            if lease_key is not None and lease_key not in found and request.lease_hint:
                found[lease_key] = Seen(b"", request.lease_hint)  # only the revision counts
                self.used_cache = True
            if request.assume_absent:
                for key in keys:
                    if key not in found:
                        found[key] = Seen(None, 0)
                        self.used_cache = True
        missing = [k for k in wanted if k not in found]
        if missing:
            fetched = await self._fetch(missing, request.tolerate_unavailable)
            found.update(fetched)
            if request.warm:
                for key, value in fetched.items():
                    if isinstance(value, Seen):
                        store._cache.put(key, value)
        if self._track:
            self.seen.update((k, v) for k, v in found.items() if isinstance(v, Seen))
        values: list[StoredValue] = [
            v if isinstance(v, Unreadable) else v.value for v in (found[k] for k in keys)
        ]
        listed = await self._list(request.list_prefix) if request.list_prefix else ()
        if lease_key is None:
            return ReadResult(values, listed=listed)
        lease = found[lease_key]
        assert isinstance(lease, Seen)
        return ReadResult(values, lease.revision, listed=listed)

    async def _list(self, prefix: bytes) -> tuple[bytes, ...]:
        """Logical keys under ``prefix``, at this run's revision (keys only)."""
        store = self._store
        full = store.namespace + prefix
        async with store._read_slots:  # a range, not a txn: it works even over quota
            found = await store.client.range(
                full, prefix_end(full), revision=self.revision, keys_only=True
            )
        if self.revision == 0:
            self.revision = int(found.header.revision)
        cut = len(store.namespace)
        return tuple(bytes(kv.key)[cut:] for kv in found.kvs)

    async def _fetch(self, keys: list[bytes], tolerate: bool) -> dict[bytes, _Fetched]:
        store = self._store
        size = store.max_txn_ops
        chunks = [keys[i : i + size] for i in range(0, len(keys), size)]
        found: dict[bytes, _Fetched] = {}
        if self.revision == 0:
            # The first read is linearizable and fixes the revision of all the others.
            first = await store.range_at(chunks[0], 0)
            self.revision = int(first.header.revision)
            found.update(self._values(chunks[0], first))
            chunks = chunks[1:]
        replies = await asyncio.gather(
            *(store.range_at(c, self.revision) for c in chunks), return_exceptions=True
        )
        for chunk, reply in zip(chunks, replies, strict=True):
            if isinstance(reply, BaseException):
                if not (tolerate and isinstance(reply, EtcdUnavailable)):
                    raise reply
                found.update(dict.fromkeys(chunk, Unreadable(f"etcd: {reply}")))
            else:
                found.update(self._values(chunk, reply))
        return found

    def _values(self, keys: list[bytes], reply: rpc_pb2.TxnResponse) -> dict[bytes, _Fetched]:
        return {
            key: self._store._seen(key, response.response_range.kvs)
            for key, response in zip(keys, reply.responses, strict=True)
        }
