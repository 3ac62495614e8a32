"""Python client library for MobKit: blocking (:class:`MobKit`) and asyncio (:class:`AsyncMobKit`).

::

    from mobkit.client import MobKit, NotAddressable

    with MobKit("127.0.0.1:7700") as mk:
        receipt = mk.send("coordinator", "remember the milk", idempotency_key="milk-1")
        for status in mk.list_statuses():
            print(status.identity, status.state.value)

* Results are domain dataclasses (:mod:`mobkit.core.types`): ``DispatchReceipt``,
  ``IdentityStatus``, ``MobStructuralEventEnvelope``, ``ManagedPeerEdge``, ...
* Failures are typed exceptions (:mod:`mobkit.client.errors`) with ``reason``,
  ``domain`` and ``metadata``.
* Every unary call has a deadline (``timeout``, default 10 s, retries included);
  UNAVAILABLE is retried with exponential backoff for idempotent calls only
  (:mod:`mobkit.client.retry`).
* ``events()`` follows the event log and resumes from its last cursor after a
  disconnect or server restart (:mod:`mobkit.client.events`).
* Options (address, TLS files, bearer token) also come from ``MOBKIT_*``
  variables: :meth:`ClientOptions.from_env`.
"""

from mobkit.client.aio import AsyncMobKit, AsyncProviders
from mobkit.client.errors import (
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
    RemoteError,
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
from mobkit.client.events import EventStream
from mobkit.client.options import (
    DEFAULT_ADDRESS,
    DEFAULT_TIMEOUT,
    NO_RETRY,
    ClientOptions,
    RetryPolicy,
    tls_from,
)
from mobkit.client.orchestrator import AsyncOrchestratorClient
from mobkit.client.providers import (
    AsyncContinuityClient,
    AsyncCustomizerClient,
    AsyncLeaseClient,
    AsyncRosterClient,
    AsyncRuntimeClient,
    AsyncTopologyClient,
)
from mobkit.client.sync import (
    ContinuityClient,
    CustomizerClient,
    LeaseClient,
    MobKit,
    Providers,
    RosterClient,
    RuntimeClient,
    SyncEventStream,
    TopologyClient,
)
from mobkit.client.types import EventPage, Page, ReconcileFailure, ReconcileResult
from mobkit.security.tls import ClientTLS

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_TIMEOUT",
    "NO_RETRY",
    "AsyncContinuityClient",
    "AsyncCustomizerClient",
    "AsyncLeaseClient",
    "AsyncMobKit",
    "AsyncOrchestratorClient",
    "AsyncProviders",
    "AsyncRosterClient",
    "AsyncRuntimeClient",
    "AsyncTopologyClient",
    "BackendFull",
    "BackendUnavailable",
    "ClientOptions",
    "ClientTLS",
    "ContinuityClient",
    "ContinuityRecordNotFound",
    "CustomizerClient",
    "CustomizerFailed",
    "EventPage",
    "EventStream",
    "GenerationMismatch",
    "IdentityNotFound",
    "InvalidArgument",
    "InvalidIdentity",
    "InvalidTransition",
    "LeaseClient",
    "MobKit",
    "MobKitError",
    "NotActive",
    "NotAddressable",
    "Page",
    "PermissionDenied",
    "Providers",
    "ReconcileFailure",
    "ReconcileResult",
    "RemoteError",
    "RetryPolicy",
    "RosterClient",
    "RosterInvalid",
    "RuntimeClient",
    "SelfEdge",
    "SnapshotTooLarge",
    "StaleCheckpointVersion",
    "StaleEventCursor",
    "StaleFencingToken",
    "StoreCorruption",
    "SyncEventStream",
    "TopologyClient",
    "TopologyViolation",
    "Unauthenticated",
    "tls_from",
]
