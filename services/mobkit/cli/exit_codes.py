"""Exit codes of the ``mobkit`` client commands, one per kind of failure.

=====  =========================================================================
code   meaning
=====  =========================================================================
0      success
1      an unexpected error (INTERNAL, or a reason this CLI does not know)
2      usage error (bad flags; also every failure of ``serve`` / ``up``)
3      invalid input: INVALID_IDENTITY, INVALID_ARGUMENT, ROSTER_INVALID, SELF_EDGE;
       also ``reconcile`` when the roster's latest version was rejected
4      not found: IDENTITY_NOT_FOUND, CONTINUITY_RECORD_NOT_FOUND
5      refused in the current state: NOT_ADDRESSABLE, NOT_ACTIVE, INVALID_TRANSITION,
       STALE_FENCING_TOKEN, STALE_CHECKPOINT_VERSION, GENERATION_MISMATCH,
       STALE_EVENT_CURSOR, TOPOLOGY_VIOLATION, CUSTOMIZER_FAILED, SNAPSHOT_TOO_LARGE
6      unavailable: the server cannot be reached or did not answer in time,
       BACKEND_UNAVAILABLE (etcd, SQLite or a provider is down), or BACKEND_FULL
       (etcd or SQLite out of space: ``mobkit etcd recover``)
7      UNAUTHENTICATED or PERMISSION_DENIED
8      partial failure: ``reconcile`` finished but some identities failed
130    interrupted (Ctrl-C)
=====  =========================================================================
"""

from __future__ import annotations

import grpc

from mobkit.core.errors import MobKitError
from mobkit.wire.errors import RemoteError

OK = 0
ERROR = 1
USAGE = 2
INVALID = 3
NOT_FOUND = 4
REFUSED = 5
UNAVAILABLE = 6
DENIED = 7
PARTIAL = 8
INTERRUPTED = 130

BY_REASON: dict[str, int] = {
    **dict.fromkeys(
        ("INVALID_IDENTITY", "INVALID_ARGUMENT", "ROSTER_INVALID", "SELF_EDGE"), INVALID
    ),
    **dict.fromkeys(
        (
            "IDENTITY_NOT_FOUND",
            "CONTINUITY_RECORD_NOT_FOUND",
            "SESSION_NOT_FOUND",
            "FLOW_NOT_FOUND",
            "RUN_NOT_FOUND",
        ),
        NOT_FOUND,
    ),
    **dict.fromkeys(
        (
            "NOT_ADDRESSABLE",
            "NOT_ACTIVE",
            "INVALID_TRANSITION",
            "STALE_FENCING_TOKEN",
            "STALE_CHECKPOINT_VERSION",
            "GENERATION_MISMATCH",
            "STALE_EVENT_CURSOR",
            "TOPOLOGY_VIOLATION",
            "CUSTOMIZER_FAILED",
            "SNAPSHOT_TOO_LARGE",
            "SPEC_REVISION_CONFLICT",
        ),
        REFUSED,
    ),
    "BACKEND_UNAVAILABLE": UNAVAILABLE,
    "BACKEND_FULL": UNAVAILABLE,
    "UNAUTHENTICATED": DENIED,
    "PERMISSION_DENIED": DENIED,
}

C = grpc.StatusCode
BY_CODE: dict[str, int] = {
    C.INVALID_ARGUMENT.name: INVALID,
    C.OUT_OF_RANGE.name: INVALID,
    C.NOT_FOUND.name: NOT_FOUND,
    C.FAILED_PRECONDITION.name: REFUSED,
    C.ABORTED.name: REFUSED,
    C.ALREADY_EXISTS.name: REFUSED,
    C.RESOURCE_EXHAUSTED.name: REFUSED,
    C.UNAVAILABLE.name: UNAVAILABLE,
    C.DEADLINE_EXCEEDED.name: UNAVAILABLE,
    C.UNAUTHENTICATED.name: DENIED,
    C.PERMISSION_DENIED.name: DENIED,
}


def exit_code(exc: MobKitError) -> int:
    if isinstance(exc, RemoteError):
        return BY_REASON.get(exc.remote_reason or "", BY_CODE.get(exc.code, ERROR))
    return BY_REASON.get(exc.reason, ERROR)
