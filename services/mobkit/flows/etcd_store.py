"""Runs in etcd (key layout: :class:`mobkit.core.keyspace.Keyspace`, "flows").

Every write of a run's record is one txn that also compares the run's lease key
(:func:`mobkit.lease.etcd_fence.fence_compare`): a replica that lost the run — paused
past its TTL, partitioned — cannot write it, whatever it believes. A finished run's
record and request key move onto a retention lease (:class:`RetentionLeases`), so etcd
deletes them when the retention ends, and the run leaves ``runs-active``.
"""

from __future__ import annotations

from collections.abc import Sequence

from mobkit.core.errors import SnapshotTooLarge, StaleFencingToken
from mobkit.core.keyspace import Keyspace, run_lease_identity
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.errors import EtcdError, EtcdLeaseNotFound, backend_error
from mobkit.etcd.ops import (
    compare_version,
    delete_op,
    prefix_end,
    put_op,
    range_op,
    txn_request,
)
from mobkit.etcd.retention_leases import RetentionLeases
from mobkit.flows.records import RunRecord
from mobkit.flows.run_codec import decode_record, encode_record
from mobkit.flows.store import DEFAULT_RUN_RETENTION_SECONDS, MAX_RECORD_BYTES
from mobkit.gen.etcd.api.etcdserverpb import rpc_pb2
from mobkit.lease.etcd_fence import fence_compare


class EtcdRunStore:
    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        *,
        retention_seconds: float = DEFAULT_RUN_RETENTION_SECONDS,
    ) -> None:
        self._client = client
        self._keys = Keyspace(prefix)
        self._retention = RetentionLeases(client, lambda: retention_seconds)

    async def _txn(self, request: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        try:
            return await self._client.txn(request)
        except EtcdError as exc:
            raise backend_error(exc) from exc

    async def create(self, record: RunRecord) -> tuple[RunRecord, bool]:
        keys, run_id = self._keys, record.run_id
        writes = [put_op(keys.run(run_id), _encoded(record)), put_op(keys.run_active(run_id), b"")]
        compare: list[rpc_pb2.Compare] = [compare_version(keys.run(run_id), "=", 0)]
        failure: list[rpc_pb2.RequestOp] = []
        if record.request_id is not None:
            request_key = keys.run_request(record.request_id)
            compare.append(compare_version(request_key, "=", 0))
            writes.append(put_op(request_key, run_id.encode()))
            failure.append(range_op(request_key))
        reply = await self._txn(txn_request(compare, writes, failure))
        if reply.succeeded:
            return record, True
        # The request id was used, or the run id exists (a nested run created again by
        # its parent's new owner): either way, the run that is there.
        kvs = reply.responses[0].response_range.kvs if failure else []
        existing = await self.get(bytes(kvs[0].value).decode() if kvs else run_id)
        if existing is None:  # gone past its retention between the two reads
            return await self.create(record)
        return existing, False

    async def get(self, run_id: str) -> RunRecord | None:
        try:
            kv = await self._client.get(self._keys.run(run_id))
        except EtcdError as exc:
            raise backend_error(exc) from exc
        return None if kv is None else decode_record(bytes(kv.value), f"run {run_id}")

    async def save(self, record: RunRecord, fencing_token: int) -> None:
        data = _encoded(record)
        for attempt in range(2):
            try:
                request = await self._save_request(record, data, fencing_token)
                reply = await self._client.txn(request)
                break
            except EtcdLeaseNotFound:  # a retention bucket's lease expired early
                self._retention.forget()
                if attempt:
                    raise
            except EtcdError as exc:
                raise backend_error(exc) from exc
        if not reply.succeeded:
            identity = run_lease_identity(record.run_id)
            try:
                lease = await self._client.get(self._keys.lease(identity))
            except EtcdError as exc:
                raise backend_error(exc) from exc
            current = int(lease.create_revision) if lease is not None else 0
            raise StaleFencingToken(identity, fencing_token, current)

    async def _save_request(
        self, record: RunRecord, data: bytes, fencing_token: int
    ) -> rpc_pb2.TxnRequest:
        keys, run_id = self._keys, record.run_id
        compare = [
            fence_compare(keys, run_lease_identity(run_id), fencing_token),
            compare_version(keys.run(run_id), ">", 0),
        ]
        if not record.run.state.terminal:
            return txn_request(compare, [put_op(keys.run(run_id), data)])
        lease = await self._retention.for_key_written_now()
        writes = [
            put_op(keys.run(run_id), data, lease=lease),
            delete_op(keys.run_active(run_id)),
            delete_op(keys.run_cancel(run_id)),
        ]
        if record.request_id is not None:
            writes.append(put_op(keys.run_request(record.request_id), run_id, lease=lease))
        return txn_request(compare, writes)

    async def active(self) -> list[str]:
        return [k.decode() for k in await self._names(self._keys.runs_active)]

    async def _names(self, prefix: bytes) -> Sequence[bytes]:
        try:
            reply = await self._client.range(prefix, prefix_end(prefix), keys_only=True)
        except EtcdError as exc:
            raise backend_error(exc) from exc
        return [bytes(kv.key[len(prefix) :]) for kv in reply.kvs]

    async def page(self, after: str, limit: int) -> list[RunRecord]:
        start = self._keys.run(after) + b"\0" if after else self._keys.runs
        try:
            reply = await self._client.range(start, prefix_end(self._keys.runs), limit=limit)
        except EtcdError as exc:
            raise backend_error(exc) from exc
        return [decode_record(bytes(kv.value), kv.key.decode(errors="replace")) for kv in reply.kvs]

    async def request_cancel(self, run_id: str) -> None:
        keys = self._keys
        # Only for a run still active: a finished run keeps no cancel key behind.
        await self._txn(
            txn_request(
                [compare_version(keys.run_active(run_id), ">", 0)],
                [put_op(keys.run_cancel(run_id), b"")],
            )
        )

    async def cancel_requested(self, run_id: str) -> bool:
        try:
            return await self._client.get(self._keys.run_cancel(run_id)) is not None
        except EtcdError as exc:
            raise backend_error(exc) from exc


def _encoded(record: RunRecord) -> bytes:
    data = encode_record(record)
    if len(data) > MAX_RECORD_BYTES:
        raise SnapshotTooLarge(len(data), MAX_RECORD_BYTES)
    return data
