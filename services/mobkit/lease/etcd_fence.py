"""The ownership check a fenced etcd write carries (CONVENTIONS.md, "etcd").

A grant's fencing token is its lease key's ``create_revision``, so "the writer still
owns the identity" is one compare, made in the same txn as the protected write: the
lease service's renew and release, the continuity engine's commits and the
orchestrator's operator intents all use this one.
"""

from __future__ import annotations

from mobkit.core.keyspace import Keyspace
from mobkit.etcd.ops import compare_create_revision
from mobkit.gen.etcd.api.etcdserverpb import rpc_pb2


def fence_compare(keys: Keyspace, identity: str, token: int) -> rpc_pb2.Compare:
    """True while ``identity``'s lease key is the one ``token`` names (0: no key)."""
    return compare_create_revision(keys.lease(identity), "=", token)
