"""etcd engine: records and snapshots under ``<prefix>/continuity/``.

An operation reads its keys at one revision (the first read is linearizable, later ones
pin its revision, so a record and its snapshot are always seen together), then commits
with ONE txn that compares the ``mod_revision`` of every key it read. A conflicting
writer makes the txn fail and the operation is decided again on fresh state (CAS loop).

Fencing against the lease service (``lease_fence``, on by default when both share an
etcd): the same txn also requires ``create_revision(<prefix>/leases/<identity>)`` to be
the presented token, so a writer whose lease was lost or re-acquired by someone else
cannot write even if no newer owner has written yet.

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
from collections.abc import Callable, Sequence
from typing import TypeVar

from mobkit.continuity.domain import DEFAULT_SNAPSHOT_LIMIT_BYTES
from mobkit.continuity.operations import Commit, Plan, PlanStore, Read, ReadResult, StoredValue
from mobkit.continuity.rules import Unreadable
from mobkit.core.errors import InvalidArgument, StoreUnavailable
from mobkit.core.types import DurabilityPolicy, SyncWriteThrough
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.errors import EtcdCompacted, EtcdError, EtcdUnavailable
from mobkit.etcd.ops import (
    compare_create_revision,
    compare_mod_revision,
    delete_op,
    prefix_end,
    put_op,
    txn_request,
)
from mobkit.gen.etcd.api.etcdserverpb import rpc_pb2
from mobkit.gen.etcd.api.mvccpb import kv_pb2

T = TypeVar("T")

_Fetched = kv_pb2.KeyValue | Unreadable | None

log = logging.getLogger(__name__)

ETCD_DEFAULT_MAX_REQUEST_BYTES = 1536 * 1024
ETCD_DEFAULT_MAX_TXN_OPS = 128
REQUEST_OVERHEAD_BYTES = 64 * 1024
"""Room a save txn needs besides the snapshot data (record, header, keys, compares)."""

DEFAULT_MAX_ATTEMPTS = 200
DEFAULT_READ_CONCURRENCY = 8


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

    @property
    def durability_policy(self) -> DurabilityPolicy:
        return SyncWriteThrough()  # acknowledged = committed by a quorum

    def etcd_key(self, key: bytes) -> bytes:
        """The etcd key of a logical key (tests and tools use it)."""
        return self.namespace + key

    def lease_key(self, identity: str) -> bytes:
        return self._lease_root + identity.encode()

    async def _execute(self, make_plan: Callable[[], Plan[T]], *, writes: bool) -> T:
        for attempt in range(self._max_attempts):
            reader = _PinnedReader(self, track=writes)
            try:
                commit = await self._run(make_plan(), reader)
                if not commit.writes or await self._commit(commit, reader):
                    return commit.result
            except EtcdCompacted:
                pass  # the pinned revision was compacted away: read again
            except EtcdUnavailable as exc:
                raise StoreUnavailable(str(exc), backend="etcd") from exc
            except EtcdError as exc:
                raise StoreUnavailable(f"etcd refused the request: {exc}", backend="etcd") from exc
            if attempt:  # spread out writers that keep colliding
                await asyncio.sleep(random.uniform(0, min(0.05, 0.0005 * 2**attempt)))
        raise StoreUnavailable(
            f"gave up after {self._max_attempts} conflicting attempts", backend="etcd"
        )

    async def _run(self, plan: Plan[T], reader: _PinnedReader) -> Commit[T]:
        try:
            request = next(plan)
            while True:
                request = plan.send(await reader.read(request))
        except StopIteration as stop:
            commit: Commit[T] = stop.value
            return commit
        finally:
            plan.close()

    async def _commit(self, commit: Commit[T], reader: _PinnedReader) -> bool:
        """One txn: every key read unchanged (and the lease key still the token's), then
        the writes. False when something changed since the reads."""
        ns = self.namespace
        compares = [compare_mod_revision(k, "=", rev) for k, rev in reader.mod_revisions.items()]
        compares += [
            compare_create_revision(k, "=", rev) for k, rev in reader.lease_revisions.items()
        ]
        success = [delete_op(ns + p, prefix_end(ns + p)) for p in commit.delete_prefixes]
        success += [delete_op(ns + k) for k in commit.deletes]
        success += [put_op(ns + k, v) for k, v in commit.puts.items()]
        reply = await self.client.txn(txn_request(compares, success))
        return bool(reply.succeeded)

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


class _PinnedReader:
    """Reads of one plan run: all at the revision of the first, recording what was seen."""

    def __init__(self, store: EtcdContinuityStore, *, track: bool) -> None:
        self._store = store
        self._track = track
        self.revision = 0
        self.mod_revisions: dict[bytes, int] = {}
        self.lease_revisions: dict[bytes, int] = {}

    async def read(self, request: Read) -> ReadResult:
        store = self._store
        keys = [store.namespace + k for k in request.keys]
        lease_key = (
            store.lease_key(request.lease_of)
            if request.lease_of is not None and store.lease_fence
            else None
        )
        wanted = [*keys, lease_key] if lease_key is not None else keys
        found = await self._fetch(wanted, request.tolerate_unavailable)
        values: list[StoredValue] = []
        for key in keys:
            kv = found[key]
            if isinstance(kv, Unreadable):
                values.append(kv)
                continue
            values.append(kv.value if kv is not None else None)
            if self._track:
                self.mod_revisions[key] = kv.mod_revision if kv is not None else 0
        if lease_key is None:
            return ReadResult(values)
        lease = found[lease_key]
        assert not isinstance(lease, Unreadable)
        lease_revision = lease.create_revision if lease is not None else 0
        self.lease_revisions[lease_key] = lease_revision
        return ReadResult(values, lease_revision)

    async def _fetch(self, keys: list[bytes], tolerate: bool) -> dict[bytes, _Fetched]:
        size = self._store.max_txn_ops
        chunks = [keys[i : i + size] for i in range(0, len(keys), size)]
        found: dict[bytes, _Fetched] = {}
        if self.revision == 0:
            # The first read is linearizable and fixes the revision of all the others.
            first = await self._store.range_at(chunks[0], 0)
            self.revision = int(first.header.revision)
            found.update(_values(chunks[0], first))
            chunks = chunks[1:]
        replies = await asyncio.gather(
            *(self._store.range_at(c, self.revision) for c in chunks), return_exceptions=True
        )
        for chunk, reply in zip(chunks, replies, strict=True):
            if isinstance(reply, BaseException):
                if not (tolerate and isinstance(reply, EtcdUnavailable)):
                    raise reply
                found.update(dict.fromkeys(chunk, Unreadable(f"etcd: {reply}")))
            else:
                found.update(_values(chunk, reply))
        return found


def _values(keys: list[bytes], reply: rpc_pb2.TxnResponse) -> dict[bytes, _Fetched]:
    out: dict[bytes, _Fetched] = {}
    for key, response in zip(keys, reply.responses, strict=True):
        kvs = response.response_range.kvs
        out[key] = kvs[0] if kvs else None
    return out
