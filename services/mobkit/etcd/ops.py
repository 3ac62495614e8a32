"""Builders for etcd requests: keys, compares and transaction operations.

They keep call sites short when a backend assembles one large transaction, e.g. a chunk
of lease acquisitions as nested txns in a single round trip::

    txn_request(
        compare=[compare_create_revision(key, "=", 0)],
        success=[put_op(key, holder, lease=lease_id)],
        failure=[range_op(key)],
    )
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from mobkit.gen.etcd.api.etcdserverpb import rpc_pb2

Key = bytes | str
CompareOp = Literal["=", "!=", ">", "<"]

_RESULTS = {
    "=": rpc_pb2.Compare.EQUAL,
    "!=": rpc_pb2.Compare.NOT_EQUAL,
    ">": rpc_pb2.Compare.GREATER,
    "<": rpc_pb2.Compare.LESS,
}


def to_bytes(key: Key) -> bytes:
    """Keys and values are bytes on the wire; ``str`` is encoded as UTF-8."""
    return key.encode() if isinstance(key, str) else key


def prefix_end(prefix: Key) -> bytes:
    """The ``range_end`` that selects every key starting with ``prefix``.

    The last byte below 0xff is incremented and the rest dropped; an empty or all-0xff
    prefix yields ``b"\\0"``, which etcd reads as "every key >= key".
    """
    raw = bytearray(to_bytes(prefix))
    for i in range(len(raw) - 1, -1, -1):
        if raw[i] < 0xFF:
            raw[i] += 1
            return bytes(raw[: i + 1])
    return b"\0"


def _compare(
    key: Key, op: CompareOp, target: rpc_pb2.Compare.CompareTarget.ValueType, range_end: Key | None
) -> rpc_pb2.Compare:
    return rpc_pb2.Compare(
        key=to_bytes(key),
        result=_RESULTS[op],
        target=target,
        range_end=to_bytes(range_end) if range_end is not None else b"",
    )


def compare_create_revision(
    key: Key, op: CompareOp, revision: int, *, range_end: Key | None = None
) -> rpc_pb2.Compare:
    """``create_revision(key) op revision``; ``== 0`` means "the key does not exist"."""
    cmp = _compare(key, op, rpc_pb2.Compare.CREATE, range_end)
    cmp.create_revision = revision
    return cmp


def compare_mod_revision(
    key: Key, op: CompareOp, revision: int, *, range_end: Key | None = None
) -> rpc_pb2.Compare:
    cmp = _compare(key, op, rpc_pb2.Compare.MOD, range_end)
    cmp.mod_revision = revision
    return cmp


def compare_version(
    key: Key, op: CompareOp, version: int, *, range_end: Key | None = None
) -> rpc_pb2.Compare:
    cmp = _compare(key, op, rpc_pb2.Compare.VERSION, range_end)
    cmp.version = version
    return cmp


def compare_value(
    key: Key, op: CompareOp, value: Key, *, range_end: Key | None = None
) -> rpc_pb2.Compare:
    cmp = _compare(key, op, rpc_pb2.Compare.VALUE, range_end)
    cmp.value = to_bytes(value)
    return cmp


def compare_lease(
    key: Key, op: CompareOp, lease_id: int, *, range_end: Key | None = None
) -> rpc_pb2.Compare:
    cmp = _compare(key, op, rpc_pb2.Compare.LEASE, range_end)
    cmp.lease = lease_id
    return cmp


def range_request(
    key: Key,
    range_end: Key | None = None,
    *,
    limit: int = 0,
    revision: int = 0,
    keys_only: bool = False,
    count_only: bool = False,
    serializable: bool = False,
) -> rpc_pb2.RangeRequest:
    return rpc_pb2.RangeRequest(
        key=to_bytes(key),
        range_end=to_bytes(range_end) if range_end is not None else b"",
        limit=limit,
        revision=revision,
        keys_only=keys_only,
        count_only=count_only,
        serializable=serializable,
    )


def range_op(
    key: Key,
    range_end: Key | None = None,
    *,
    limit: int = 0,
    keys_only: bool = False,
    count_only: bool = False,
) -> rpc_pb2.RequestOp:
    """A read inside a txn (it sees the txn's own revision, so no ``revision``)."""
    return rpc_pb2.RequestOp(
        request_range=range_request(
            key, range_end, limit=limit, keys_only=keys_only, count_only=count_only
        )
    )


def put_op(key: Key, value: Key, *, lease: int = 0, prev_kv: bool = False) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(
        request_put=rpc_pb2.PutRequest(
            key=to_bytes(key), value=to_bytes(value), lease=lease, prev_kv=prev_kv
        )
    )


def delete_op(
    key: Key, range_end: Key | None = None, *, prev_kv: bool = False
) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(
        request_delete_range=rpc_pb2.DeleteRangeRequest(
            key=to_bytes(key),
            range_end=to_bytes(range_end) if range_end is not None else b"",
            prev_kv=prev_kv,
        )
    )


def txn_request(
    compare: Iterable[rpc_pb2.Compare] = (),
    success: Iterable[rpc_pb2.RequestOp] = (),
    failure: Iterable[rpc_pb2.RequestOp] = (),
) -> rpc_pb2.TxnRequest:
    return rpc_pb2.TxnRequest(compare=list(compare), success=list(success), failure=list(failure))


def txn_op(
    compare: Iterable[rpc_pb2.Compare] = (),
    success: Iterable[rpc_pb2.RequestOp] = (),
    failure: Iterable[rpc_pb2.RequestOp] = (),
) -> rpc_pb2.RequestOp:
    """A nested txn (etcd >= 3.3): many independent compare-and-sets in one round trip."""
    return rpc_pb2.RequestOp(request_txn=txn_request(compare, success, failure))
