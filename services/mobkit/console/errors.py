"""MobKit errors as HTTP answers: the gRPC code's usual HTTP status, the reason and
message as JSON (AIP-193's mapping of codes to HTTP)."""

from __future__ import annotations

from starlette.responses import JSONResponse

from mobkit.cli.output import error_message, error_reason
from mobkit.core.errors import MobKitError
from mobkit.wire.errors import RemoteError

HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 409,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "UNIMPLEMENTED": 501,
}


def error_body(exc: MobKitError) -> dict[str, object]:
    return {
        "error": {
            "reason": error_reason(exc),
            "message": error_message(exc, None),
            "metadata": exc.metadata,
        }
    }


def http_status(exc: MobKitError) -> int:
    code = exc.code if isinstance(exc, RemoteError) else exc.grpc_code
    return HTTP_STATUS.get(code, 500)


def error_response(exc: MobKitError) -> JSONResponse:
    return JSONResponse(error_body(exc), status_code=http_status(exc))
