"""The etcd request that acquires a chunk of identities, built fast.

Per key, a nested txn ``If(create_revision == 0) Then(put holder on the lease)
Else(range)``. Composing these protobuf messages costs about 7 µs per key in
Python, more than etcd spends applying them, so for a 10,000-identity batch it was
most of the service's own CPU time. Instead, the serialized form of one key's op is
cut, once per (key length, holder, lease), around the three places the key goes;
a chunk is then those pieces joined around each key and parsed back in one C call.
The slow builder stays as the reference (and as the fallback).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from mobkit.gen.etcd.api.etcdserverpb import rpc_pb2


def build_acquire_request(
    keys: Sequence[bytes], holder: bytes, lease_id: int
) -> rpc_pb2.TxnRequest:
    """The reference builder: messages filled in place."""
    request = rpc_pb2.TxnRequest()
    for key in keys:
        sub = request.success.add().request_txn
        cmp = sub.compare.add()
        cmp.key = key
        cmp.target = rpc_pb2.Compare.CREATE
        cmp.result = rpc_pb2.Compare.EQUAL
        cmp.create_revision = 0
        put = sub.success.add().request_put
        put.key, put.value, put.lease = key, holder, lease_id
        sub.failure.add().request_range.key = key
    return request


@functools.lru_cache(maxsize=1024)
def _pieces(key_length: int, holder: bytes, lease_id: int) -> tuple[bytes, ...] | None:
    """The serialized one-key request split around its key, or None if it does not
    split as expected (then the reference builder is used)."""
    zeros = build_acquire_request([b"\0" * key_length], holder, lease_id).SerializeToString()
    ones = build_acquire_request([b"\1" * key_length], holder, lease_id).SerializeToString()
    pieces, start, i = [], 0, 0
    while i < len(zeros):  # every run of differing bytes is one copy of the key
        if zeros[i] != ones[i]:
            pieces.append(zeros[start:i])
            i += key_length
            start = i
        else:
            i += 1
    pieces.append(zeros[start:])
    return tuple(pieces) if len(pieces) == 4 else None


def acquire_request(keys: Sequence[bytes], holder: bytes, lease_id: int) -> rpc_pb2.TxnRequest:
    """Equal to :func:`build_acquire_request` (a repeated field's encoding is the
    concatenation of its elements'), about ten times faster."""
    parts: list[bytes] = []
    extend = parts.extend
    for key in keys:
        pieces = _pieces(len(key), holder, lease_id)
        if pieces is None:
            return build_acquire_request(keys, holder, lease_id)
        p0, p1, p2, p3 = pieces
        extend((p0, key, p1, key, p2, key, p3))
    return rpc_pb2.TxnRequest.FromString(b"".join(parts))
