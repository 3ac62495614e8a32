"""Deadlines and retries for unary calls, in one channel interceptor.

Retried: UNAVAILABLE only (AIP-194), and only for calls that are safe to repeat:

* reads, and the RPCs the protos document as idempotent or convergent
  (``Reconcile``, ``RetireIdentity``, lease renew/release, ...);
* ``Send`` / ``Dispatch`` only when the input carries an ``idempotency_key``, and
  ``ResetIdentity`` only with a ``request_id`` (the server then deduplicates);
* never anything else: a ``Send`` without key may have run its turn before the
  connection broke, so it fails at once and the caller decides.

Every call gets a deadline (the caller's, else the client's default); retries
share it, so a call never outlives its deadline however many attempts it takes.
The interceptor sits below the service adapters, so it sees raw gRPC codes and
they translate the final outcome into a typed exception once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from mobkit.client.options import RetryPolicy

_ORCH = "/mobkit.orchestrator.v1.OrchestratorService/"
_LEASE = "/mobkit.lease.v1.LeaseService/"
_CONT = "/mobkit.continuity.v1.ContinuityStoreService/"
_FLOWS = "/mobkit.flows.v1.FlowService/"

IDEMPOTENT: frozenset[str] = frozenset(
    {
        *(
            _ORCH + m
            for m in (
                "GetIdentityStatus",
                "ListIdentityStatuses",
                "ListEvents",
                "GetTopology",
                "ListModules",
                "GetTurn",
                "Reconcile",  # converges: a repeated cycle changes nothing more
                "RetireIdentity",  # documented idempotent
                "SuspendIdentity",
                "ResumeIdentity",
            )
        ),
        *(_LEASE + m for m in ("AcquireLeases", "RenewLeases", "ReleaseLeases", "ListLeases")),
        *(
            _CONT + m
            for m in (
                "ResolveMany",
                "LoadSessionSnapshot",
                "SaveSessionSnapshot",  # a re-sent save that committed succeeds unchanged
                "UpsertContinuityRecord",
                "ResolveRecordBySession",
                "GetContinuityHealth",
                "LoadReceipt",
            )
        ),
        "/mobkit.roster.v1.RosterService/GetRoster",
        "/mobkit.topology.v1.TopologyService/ComputeEdges",
        "/mobkit.customizer.v1.AgentCustomizerService/CustomizeBuild",
        "/mobkit.runtime.v1.AgentRuntimeService/ExportSnapshot",
        *(
            _FLOWS + m
            for m in ("ListFlows", "GetRun", "ListRuns", "CancelRun")  # CancelRun: idempotent
        ),
    }
)
"""Full method names that may always be retried on UNAVAILABLE."""


def _has_idempotency_key(request: Any) -> bool:
    return bool(request.HasField("input") and request.input.HasField("idempotency_key"))


def _has_request_id(request: Any) -> bool:
    return bool(request.request_id)


CONDITIONAL: dict[str, Callable[[Any], bool]] = {
    _ORCH + "Send": _has_idempotency_key,
    _ORCH + "Dispatch": _has_idempotency_key,
    _ORCH + "SubmitTurn": _has_idempotency_key,
    _ORCH + "ResetIdentity": _has_request_id,
    _FLOWS + "StartRun": _has_request_id,
}
"""Methods retried only when their request makes them idempotent."""


def is_idempotent(method: str | bytes, request: Any) -> bool:
    name = method.decode() if isinstance(method, bytes) else method
    if name in IDEMPOTENT:
        return True
    check = CONDITIONAL.get(name)
    return check is not None and check(request)


class RetryInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Gives every unary call a deadline and retries idempotent ones on UNAVAILABLE."""

    def __init__(
        self,
        policy: RetryPolicy,
        default_timeout: float,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.default_timeout = default_timeout
        self._sleep = sleep
        self._clock = clock
        self.retries = 0  # retries made by this channel, for tests and diagnostics

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        timeout = details.timeout if details.timeout is not None else self.default_timeout
        deadline = self._clock() + timeout
        attempts = self.policy.max_attempts if is_idempotent(details.method, request) else 1
        attempt = 0
        while True:
            attempt_details = grpc.aio.ClientCallDetails(
                method=details.method,
                timeout=max(deadline - self._clock(), 0.001),
                metadata=details.metadata,
                credentials=details.credentials,
                wait_for_ready=details.wait_for_ready,
            )
            try:
                call = await continuation(attempt_details, request)
                return await call
            except grpc.aio.AioRpcError as err:
                attempt += 1
                if err.code() != grpc.StatusCode.UNAVAILABLE or attempt >= attempts:
                    raise
                delay = self.policy.backoff(attempt - 1)
                if self._clock() + delay >= deadline:
                    raise
            self.retries += 1
            await self._sleep(delay)
