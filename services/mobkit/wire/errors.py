"""``grpc.RpcError`` -> domain exception, for every gRPC client adapter.

The server sends one ``google.rpc.ErrorInfo`` (domain ``mobkit.dev``) per error;
its ``reason`` picks the exception class in :data:`~mobkit.core.error_registry.REGISTRY`
and the class's ``from_metadata`` rebuilds it, so callers catch the same exceptions
whether a provider runs in-process or behind gRPC::

    try:
        reply = await stub.AcquireLeases(request)
    except grpc.RpcError as err:
        raise error_from_rpc(err, LeaseProviderUnavailable) from None

Classes passed in ``specific`` win over the shared ones for their reason (a
service-specific subclass of ``BackendUnavailable``, or an error defined in a
service's own ``domain.py``). A call that fails without ErrorInfo (server down,
deadline) becomes ``BackendUnavailable`` for UNAVAILABLE/DEADLINE_EXCEEDED and
:class:`RemoteError` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from mobkit.core import errors as e
from mobkit.core.error_registry import REGISTRY
from mobkit.core.errors import DOMAIN

_UNAVAILABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class RemoteError(e.MobKitError):
    """A failed call without a MobKit reason this client knows."""

    def __init__(self, code: str, message: str, reason: str | None = None) -> None:
        super().__init__(message, code=code, remote_reason=reason)
        self.code = code
        self.remote_reason = reason


def error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The call's MobKit ErrorInfo, if its status details carry one."""
    try:
        # types-grpcio-status asks for a grpc.Call; from_call reads only code(), details()
        # and trailing_metadata(), which a failed call's error (sync or aio) has too.
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
    except ValueError:  # details inconsistent with the call's code: not ours
        return None
    return _status_info(status) if status is not None else None


def _status_info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo | None:
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.domain == DOMAIN:
            return info
    return None


def error_from_rpc(err: grpc.RpcError, *specific: type[e.MobKitError]) -> e.MobKitError:
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message = (err.details() if hasattr(err, "details") else None) or str(code)
    return _error(code, message, error_info(err), specific)


def error_from_status(status: status_pb2.Status, *specific: type[e.MobKitError]) -> e.MobKitError:
    """The same, for a ``google.rpc.Status`` carried in a reply (one item's outcome of
    a batch call) rather than as the call's own status."""
    code = _CODES.get(status.code, grpc.StatusCode.UNKNOWN)
    return _error(code, status.message or str(code), _status_info(status), specific)


_CODES = {c.value[0]: c for c in grpc.StatusCode}


def _error(
    code: grpc.StatusCode,
    message: str,
    info: error_details_pb2.ErrorInfo | None,
    specific: tuple[type[e.MobKitError], ...],
) -> e.MobKitError:
    if info is None:
        if code in _UNAVAILABLE:
            unavailable = next((c for c in specific if issubclass(c, e.BackendUnavailable)), None)
            return _build(
                unavailable or e.BackendUnavailable,
                message,
                {"backend": "remote service", "detail": message},
            )
        return RemoteError(code.name, message)
    return error_from_info(info.reason, message, info.metadata, *specific, code=code.name)


def error_from_info(
    reason: str,
    message: str,
    metadata: Mapping[str, str],
    *specific: type[e.MobKitError],
    code: str = "UNKNOWN",
) -> e.MobKitError:
    """The domain exception for an ErrorInfo's fields (a call's status, or an error
    carried inside a message such as a RunTurnStream callback's); an unknown reason
    is a :class:`RemoteError` with ``code``."""
    cls = REGISTRY.decoder(*specific).get(reason)
    if cls is None:
        return RemoteError(code, message, reason)
    return _build(cls, message, dict(metadata))


def _build(cls: type[e.MobKitError], message: str, metadata: Mapping[str, str]) -> e.MobKitError:
    """``cls`` from its metadata; the server's message and metadata are kept as they
    were sent."""
    try:
        exc = cls.from_metadata(message, metadata)
    except (KeyError, TypeError, ValueError):  # metadata lacks an argument: the bare error
        exc = cls.__new__(cls)
        e.MobKitError.__init__(exc, message)
    exc.args = (message,)
    exc.message = message
    exc.metadata = dict(metadata)
    return exc
