"""``grpc.RpcError`` -> domain exception, for every gRPC client adapter.

The server sends one ``google.rpc.ErrorInfo`` (domain ``mobkit.dev``) per error;
its ``reason`` picks the exception class and its ``metadata`` fills the
constructor's arguments, so callers catch the same exceptions whether a provider
runs in-process or behind gRPC::

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

import inspect
from collections.abc import Callable, Mapping

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mobkit.core import errors as e
from mobkit.server.errors import DOMAIN

SHARED: tuple[type[e.MobKitError], ...] = (
    e.InvalidIdentity,
    e.InvalidArgument,
    e.BackendUnavailable,
    e.BackendFull,
    e.Unauthenticated,
    e.PermissionDenied,
    e.StaleFencingToken,
    e.StaleCheckpointVersion,
    e.GenerationMismatch,
    e.ContinuityRecordNotFound,
    e.StoreCorruption,
    e.SnapshotTooLarge,
    e.RosterInvalid,
    e.SelfEdge,
    e.CustomizerFailed,
    e.IdentityNotFound,
    e.NotAddressable,
    e.NotActive,
    e.InvalidTransition,
    e.StaleEventCursor,
    e.TopologyViolation,
)

# Constructor parameters whose metadata key differs from their name.
_ALIASES = {"from_state": "from", "to_state": "to", "from_identity": "from", "to_identity": "to"}

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
        status = rpc_status.from_call(err)
    except ValueError:  # details inconsistent with the call's code: not ours
        return None
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.domain == DOMAIN:
            return info
    return None


def error_from_rpc(err: grpc.RpcError, *specific: type[e.MobKitError]) -> e.MobKitError:
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message = (err.details() if hasattr(err, "details") else None) or str(code)
    info = error_info(err)
    if info is None:
        if code in _UNAVAILABLE:
            unavailable = next((c for c in specific if issubclass(c, e.BackendUnavailable)), None)
            return _build(
                unavailable or e.BackendUnavailable,
                message,
                {"backend": "remote service", "detail": message},
            )
        return RemoteError(code.name, message)
    classes = {cls.reason: cls for cls in (*SHARED, *specific)}
    cls = classes.get(info.reason)
    if cls is None:
        return RemoteError(code.name, message, info.reason)
    return _build(cls, message, dict(info.metadata))


def _build(cls: type[e.MobKitError], message: str, metadata: Mapping[str, str]) -> e.MobKitError:
    """``cls`` from the metadata its constructor names; the server's message and
    metadata are kept as they were sent."""
    kwargs: dict[str, object] = {}
    for name, param in inspect.signature(cls).parameters.items():
        value = metadata.get(_ALIASES.get(name, name))
        if name == "message":
            kwargs[name] = message
        elif value is not None:
            kwargs[name] = _coerce(value, str(param.annotation))
    factory: Callable[..., e.MobKitError] = cls
    try:
        exc = factory(**kwargs)
    except (TypeError, ValueError):  # metadata lacks an argument: keep the bare error
        exc = cls.__new__(cls)
        e.MobKitError.__init__(exc, message)
    exc.args = (message,)
    exc.message = message
    exc.metadata = dict(metadata)
    return exc


def _coerce(value: str, annotation: str) -> object:
    if annotation.startswith("int"):
        try:
            return int(value)
        except ValueError:
            return value
    return value
