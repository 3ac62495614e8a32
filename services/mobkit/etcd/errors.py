"""Exceptions raised by :mod:`mobkit.etcd`.

Every failing etcd call surfaces as an :class:`EtcdError`; callers that only care
whether the store is reachable catch :class:`EtcdUnavailable`; a write refused because
etcd is out of space (its NOSPACE alarm) is :class:`EtcdNoSpace`. Backends translate
these into their domain errors (a store outage becomes ``UNAVAILABLE`` at the API).
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from mobkit.core.errors import BackendFull, BackendUnavailable

_UNAVAILABLE_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class EtcdError(Exception):
    """An etcd call failed. ``code`` is the gRPC status code name (``"NOT_FOUND"``)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code else self.message


class EtcdUnavailable(EtcdError):
    """No etcd member answered in time: member down, no quorum, deadline exceeded."""


class EtcdCompacted(EtcdError):
    """A watch or range asked for history older than the last compaction."""

    def __init__(self, message: str, *, compact_revision: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.compact_revision = compact_revision


class EtcdLeaseNotFound(EtcdError):
    """The lease does not exist (never granted, revoked, or expired)."""


class EtcdAuthError(EtcdError):
    """Authentication failed or the user may not perform the call."""


class EtcdNoSpace(EtcdError):
    """etcd refused a write because its space quota is exhausted (``--quota-backend-bytes``):
    the NOSPACE alarm is raised, and every Put, Txn with a write and LeaseGrant fails until
    an operator compacts, defragments and disarms (``mobkit etcd recover``). Reads,
    deletes, keepalives and compaction still work."""


NOSPACE_MESSAGE = "database space exceeded"


def map_rpc_error(err: grpc.RpcError, method: str = "") -> EtcdError:
    """The :class:`EtcdError` for a failed gRPC call (etcd's codes: ``v3rpc/rpctypes``)."""
    code = err.code() if hasattr(err, "code") else None
    details = (err.details() if hasattr(err, "details") else None) or str(code)
    name = code.name if code is not None else None
    message = f"{method}: {details}" if method else details
    if code in _UNAVAILABLE_CODES:
        return EtcdUnavailable(message, code=name)
    if code == grpc.StatusCode.NOT_FOUND and "lease not found" in details:
        return EtcdLeaseNotFound(message, code=name)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and NOSPACE_MESSAGE in details:
        return EtcdNoSpace(message, code=name)
    if code == grpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
        return EtcdCompacted(message, compact_revision=0, code=name)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED) or (
        code == grpc.StatusCode.INVALID_ARGUMENT
        and ("authentication failed" in details or "user name is empty" in details)
    ):
        return EtcdAuthError(message, code=name)
    return EtcdError(message, code=name)


def unreachable(endpoints: Sequence[str], cause: object) -> str:
    """How logs, errors and conditions say that no member at ``endpoints`` answered."""
    return f"unreachable at {', '.join(endpoints)} ({cause})"


def backend_error(exc: EtcdError, backend: str = "etcd") -> BackendFull | BackendUnavailable:
    """The domain error for a failed etcd call: ``BackendFull`` (BACKEND_FULL) when
    etcd is out of space, else ``BackendUnavailable``."""
    if isinstance(exc, EtcdNoSpace):
        return BackendFull(str(exc), backend=backend)
    return BackendUnavailable(backend, str(exc))
