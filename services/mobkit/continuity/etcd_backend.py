"""etcd engine: records and snapshots under ``<prefix>/continuity/``.

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

Large snapshots are refused, not chunked: a snapshot is one value written in the same
txn as its record, and a txn must fit etcd's request limit (``--max-request-bytes``,
1.5 MiB by default), so the snapshot limit must leave room for the rest of the request.

Batch reads (``resolve_many``) put up to ``max_txn_ops`` (etcd's ``--max-txn-ops``,
128 by default) range operations in one read-only txn: 10,000 identities cost about
2 x 10,000 / 128 round trips (records, then their snapshots), issued concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from mobkit.continuity.domain import DEFAULT_SNAPSHOT_LIMIT_BYTES
from mobkit.continuity.operations import Commit, Plan, PlanStore, Read, ReadResult, StoredValue
from mobkit.continuity.rules import Unreadable
from mobkit.core.errors import InvalidArgument, MobKitError, StoreUnavailable
from mobkit.core.types import DurabilityPolicy, SyncWriteThrough
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.errors import EtcdCompacted, EtcdError, EtcdUnavailable
from mobkit.etcd.ops import (
    compare_create_revision,
    compare_mod_revision,
    delete_op,
    prefix_end,
    put_op,
    range_op,
    txn_request,
)
from mobkit.gen.etcd.api.etcdserverpb import rpc_pb2
from mobkit.gen.etcd.api.mvccpb import kv_pb2

T = TypeVar("T")

log = logging.getLogger(__name__)

ETCD_DEFAULT_MAX_REQUEST_BYTES = 1536 * 1024
ETCD_DEFAULT_MAX_TXN_OPS = 128
REQUEST_OVERHEAD_BYTES = 64 * 1024
"""Room a save txn needs besides the snapshot data (record, header, keys, compares)."""

DEFAULT_MAX_ATTEMPTS = 200
DEFAULT_READ_CONCURRENCY = 8
DEFAULT_CACHE_ENTRIES = 4096
CACHEABLE_VALUE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Seen:
    """A key as last seen: its value (None: absent) and the revision a commit compares
    (``mod_revision``; for lease keys ``create_revision``; 0 when absent)."""

    value: bytes | None
    revision: int


_Fetched = Seen | Unreadable


class _SeenCache:
    """LRU of keys as this engine last saw them, for write plans only."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[bytes, Seen] = OrderedDict()

    def get(self, key: bytes) -> Seen | None:
        seen = self._entries.get(key)
        if seen is not None:
            self._entries.move_to_end(key)
        return seen

    def put(self, key: bytes, seen: Seen) -> None:
        if seen.value is not None and len(seen.value) > CACHEABLE_VALUE_BYTES:
            self._entries.pop(key, None)
            return
        self._entries[key] = seen
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def drop(self, keys: Iterable[bytes]) -> None:
        for key in keys:
            self._entries.pop(key, None)

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
        max_request_bytes: int = ETCD_DEFAULT_MAX_REQUEST_BYTES,
        max_txn_ops: int = ETCD_DEFAULT_MAX_TXN_OPS,
        read_concurrency: int = DEFAULT_READ_CONCURRENCY,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
    ) -> None:
        super().__init__(snapshot_limit_bytes=snapshot_limit_bytes)
        if snapshot_limit_bytes + REQUEST_OVERHEAD_BYTES > max_request_bytes:
            raise InvalidArgument(
                "snapshot_limit_bytes",
                f"{snapshot_limit_bytes} does not fit etcd's request limit of "
                f"{max_request_bytes} bytes with {REQUEST_OVERHEAD_BYTES} bytes of overhead; "
                "snapshots are not chunked",
            )
        if max_txn_ops < 4:
            raise InvalidArgument("max_txn_ops", "must be at least 4")
        self.client = client
        root = prefix.rstrip("/")
        self.namespace = f"{root}/continuity/".encode()
        self._lease_root = f"{root}/leases/".encode()
        self.lease_fence = lease_fence
        self.max_txn_ops = max_txn_ops
        self._read_slots = asyncio.Semaphore(read_concurrency)
        self._max_attempts = max_attempts
        self._cache = _SeenCache(cache_entries)

    @property
    def durability_policy(self) -> DurabilityPolicy:
        return SyncWriteThrough()  # acknowledged = committed by a quorum

    def etcd_key(self, key: bytes) -> bytes:
        """The etcd key of a logical key (tests and tools use it)."""
        return self.namespace + key

    def lease_key(self, identity: str) -> bytes:
        return self._lease_root + identity.encode()

    def is_lease_key(self, key: bytes) -> bool:
        return key.startswith(self._lease_root)

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
        and this returns False."""
        ns = self.namespace
        read_keys = list(reader.seen)
        compares = [
            compare_create_revision(k, "=", seen.revision)
            if self.is_lease_key(k)
            else compare_mod_revision(k, "=", seen.revision)
            for k, seen in reader.seen.items()
        ]
        success = [delete_op(ns + p, prefix_end(ns + p)) for p in commit.delete_prefixes]
        success += [delete_op(ns + k) for k in commit.deletes]
        success += [put_op(ns + k, v) for k, v in commit.puts.items()]
        failure = [range_op(k) for k in read_keys]
        reply = await self.client.txn(txn_request(compares, success, failure))
        if not reply.succeeded:
            for key, response in zip(read_keys, reply.responses, strict=True):
                self._cache.put(key, self._seen(key, response.response_range.kvs))
            return False
        for key, seen in reader.seen.items():
            self._cache.put(key, seen)
        for prefix in commit.delete_prefixes:
            self._cache.drop_prefix(ns + prefix)
        for key in commit.deletes:
            self._cache.put(ns + key, Seen(None, 0))
        for key, value in commit.puts.items():
            self._cache.put(ns + key, Seen(value, int(reply.header.revision)))
        return True

    def _seen(self, key: bytes, kvs: Sequence[kv_pb2.KeyValue]) -> Seen:
        if not kvs:
            return Seen(None, 0)
        kv = kvs[0]
        revision = kv.create_revision if self.is_lease_key(key) else kv.mod_revision
        return Seen(bytes(kv.value), int(revision))

    async def range_at(self, keys: Sequence[bytes], revision: int) -> rpc_pb2.TxnResponse:
        """Read ``keys`` in one read-only txn at ``revision`` (0: now, linearizable)."""
        async with self._read_slots:
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
        if lease_key is None:
            return ReadResult(values)
        lease = found[lease_key]
        assert isinstance(lease, Seen)
        return ReadResult(values, lease.revision)

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
