"""Error translation: domain exception -> gRPC code + exactly one ErrorInfo (AIP-193).

Each service declares its own table (``ErrorTable``); lookup walks the
exception's MRO so a table may map a base class.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from mobkit.core.bounds import truncate_utf8
from mobkit.core.errors import MobKitError

DOMAIN = "mobkit.dev"

ErrorTable = Mapping[type[BaseException], grpc.StatusCode]


def code_for(exc: BaseException, table: ErrorTable) -> grpc.StatusCode | None:
    for cls in type(exc).__mro__:
        code = table.get(cls)
        if code is not None:
            return code
    return None


# An error travels in the trailers twice (grpc-message, percent-encoded, and
# grpc-status-details-bin, base64) and gRPC refuses trailers above 16 KiB in all, so
# whatever a caller sent, what an error repeats of it is bounded: the message to
# 1 KiB and each metadata value to 256 bytes (at most ~8 KiB on the wire).
MAX_ERROR_MESSAGE_BYTES = 1024
MAX_ERROR_METADATA_VALUE_BYTES = 256


def status_for(
    code: grpc.StatusCode, reason: str, message: str, metadata: Mapping[str, str]
) -> status_pb2.Status:
    bounded = {k: truncate_utf8(v, MAX_ERROR_METADATA_VALUE_BYTES) for k, v in metadata.items()}
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=bounded)
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(
        code=code.value[0],
        message=truncate_utf8(message, MAX_ERROR_MESSAGE_BYTES),
        details=[detail],
    )


def status_for_error(exc: MobKitError, table: ErrorTable) -> status_pb2.Status | None:
    """The status for a known domain error, or None when the table does not list it."""
    code = code_for(exc, table)
    if code is None:
        return None
    return status_for(code, exc.reason, exc.message, exc.metadata)


def internal_status(message: str = "internal error") -> status_pb2.Status:
    return status_pb2.Status(code=code_pb2.INTERNAL, message=message)


def common_errors() -> dict[type[BaseException], grpc.StatusCode]:
    """Entries every service's table starts from (input errors, backends, auth)."""
    from mobkit.core import errors as e

    return {
        e.InvalidIdentity: grpc.StatusCode.INVALID_ARGUMENT,
        e.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
        e.BackendUnavailable: grpc.StatusCode.UNAVAILABLE,
        e.BackendFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
        e.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
        e.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    }
