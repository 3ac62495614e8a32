"""The exceptions a client raises: MobKit's domain errors, one class per reason.

A failed call is turned into one of these exactly once, from the status's
``google.rpc.ErrorInfo`` (:func:`mobkit.wire.errors.error_from_rpc`). Each has
``reason`` (e.g. ``"NOT_ADDRESSABLE"``), ``domain`` (``"mobkit.dev"``) and
``metadata`` (every dynamic value, as strings), plus typed attributes where the
reason has them (``StaleFencingToken.presented`` / ``.current``,
``NotActive.state``, ``StaleEventCursor.latest``, ...)::

    try:
        client.send("worker-3", "hello")
    except NotAddressable as exc:
        client.dispatch(exc.identity, "hello")

A call that fails without a MobKit reason is ``BackendUnavailable`` when the
server could not be reached (UNAVAILABLE, DEADLINE_EXCEEDED) and
:class:`RemoteError` (with the gRPC ``code``) otherwise.

The classes below are the shared reasons of
:data:`mobkit.core.error_registry.REGISTRY`, named one by one so that type checkers
see them (``tests/core/test_error_registry.py`` keeps the two lists equal).
"""

from __future__ import annotations

from mobkit.core.errors import (
    BackendFull,
    BackendUnavailable,
    ContinuityRecordNotFound,
    CustomizerFailed,
    GenerationMismatch,
    IdentityNotFound,
    InvalidArgument,
    InvalidIdentity,
    InvalidTransition,
    MobKitError,
    NotActive,
    NotAddressable,
    PermissionDenied,
    RosterInvalid,
    SelfEdge,
    SnapshotTooLarge,
    StaleCheckpointVersion,
    StaleEventCursor,
    StaleFencingToken,
    StoreCorruption,
    TopologyViolation,
    Unauthenticated,
)
from mobkit.wire.errors import RemoteError, error_from_rpc

__all__ = [
    "BackendFull",
    "BackendUnavailable",
    "ContinuityRecordNotFound",
    "CustomizerFailed",
    "GenerationMismatch",
    "IdentityNotFound",
    "InvalidArgument",
    "InvalidIdentity",
    "InvalidTransition",
    "MobKitError",
    "NotActive",
    "NotAddressable",
    "PermissionDenied",
    "RemoteError",
    "RosterInvalid",
    "SelfEdge",
    "SnapshotTooLarge",
    "StaleCheckpointVersion",
    "StaleEventCursor",
    "StaleFencingToken",
    "StoreCorruption",
    "TopologyViolation",
    "Unauthenticated",
    "error_from_rpc",
]
