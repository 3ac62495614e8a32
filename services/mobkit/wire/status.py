"""Domain error -> ``google.rpc.Status`` with exactly one ErrorInfo (AIP-193): what
:func:`mobkit.wire.errors.error_from_rpc` decodes. The servicers' interceptor and the
auth interceptor both send it; it lives outside ``mobkit.server`` so that the client
library, which shares the auth module, does not import the server scaffold."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from mobkit.core.bounds import truncate_utf8
from mobkit.core.errors import DOMAIN

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
