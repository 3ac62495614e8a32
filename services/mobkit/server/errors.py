"""Error translation: domain exception -> gRPC code + exactly one ErrorInfo (AIP-193).

Each service declares its own table (``ErrorTable``, built by :func:`service_errors`
from the classes it reports, at the codes they declare); lookup walks the exception's
MRO so a table may map a base class.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.rpc import code_pb2, status_pb2

from mobkit.core import errors as e
from mobkit.core.errors import DOMAIN, MobKitError
from mobkit.wire.status import (
    MAX_ERROR_MESSAGE_BYTES,
    MAX_ERROR_METADATA_VALUE_BYTES,
    status_for,
)

__all__ = [
    "DOMAIN",
    "MAX_ERROR_MESSAGE_BYTES",
    "MAX_ERROR_METADATA_VALUE_BYTES",
    "ErrorTable",
    "code_for",
    "common_errors",
    "internal_status",
    "service_errors",
    "status_for",
    "status_for_error",
]

ErrorTable = Mapping[type[BaseException], grpc.StatusCode]


def code_for(exc: BaseException, table: ErrorTable) -> grpc.StatusCode | None:
    for cls in type(exc).__mro__:
        code = table.get(cls)
        if code is not None:
            return code
    return None


def status_for_error(exc: MobKitError, table: ErrorTable) -> status_pb2.Status | None:
    """The status for a known domain error, or None when the table does not list it."""
    code = code_for(exc, table)
    if code is None:
        return None
    return status_for(code, exc.reason, exc.message, exc.metadata)


def internal_status(message: str = "internal error") -> status_pb2.Status:
    return status_pb2.Status(code=code_pb2.INTERNAL, message=message)


# What every service may raise: bad input, a backend down or full, auth.
_COMMON: tuple[type[MobKitError], ...] = (
    e.InvalidIdentity,
    e.InvalidArgument,
    e.BackendUnavailable,
    e.BackendFull,
    e.Unauthenticated,
    e.PermissionDenied,
)


def service_errors(
    *classes: type[MobKitError],
    overrides: Mapping[type[BaseException], grpc.StatusCode] | None = None,
) -> dict[type[BaseException], grpc.StatusCode]:
    """A service's table: the common entries and ``classes`` at the codes they declare,
    then ``overrides`` where this service answers a reason with another code. A class
    left out becomes INTERNAL in this service."""
    table: dict[type[BaseException], grpc.StatusCode] = {
        cls: grpc.StatusCode[cls.grpc_code] for cls in (*_COMMON, *classes)
    }
    table.update(overrides or {})
    return table


def common_errors() -> dict[type[BaseException], grpc.StatusCode]:
    """Entries every service's table starts from (input errors, backends, auth)."""
    return service_errors()
