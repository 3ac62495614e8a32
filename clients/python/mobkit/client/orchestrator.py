"""The OrchestratorService, as an asyncio client returning domain dataclasses."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc

from mobkit.client.events import DEFAULT_RECONNECT_TIMEOUT, EventStream, OnReconnect
from mobkit.client.options import RetryPolicy
from mobkit.client.types import BackendCondition, EventPage, Page, ReconcileFailure, ReconcileResult
from mobkit.core.types import (
    DispatchInput,
    DispatchOrigin,
    DispatchReceipt,
    IdentityLifecycleState,
    IdentityStatus,
    ManagedPeerEdge,
    MobStructuralEventEnvelope,
)
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2_grpc as svc_grpc
from mobkit.modules.domain import ModuleStatus
from mobkit.roster.domain import RosterProblem
from mobkit.topology.domain import EdgePage
from mobkit.wire.calls import Calls, decoder
from mobkit.wire.modules import status_from_proto as module_status_from_proto
from mobkit.wire.orchestrator import (
    dispatch_input_to_proto,
    event_from_proto,
    receipt_from_proto,
    state_to_proto,
    status_from_proto,
)
from mobkit.wire.roster import problem_from_proto
from mobkit.wire.topology import edge_from_proto

R = TypeVar("R")


class AsyncOrchestratorClient:
    """Calls an OrchestratorService over ``channel`` (which belongs to the caller).

    Every unary call takes an optional ``timeout`` (seconds), else the channel's
    default deadline applies. Errors are :mod:`mobkit.client.errors` exceptions.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._stub = svc_grpc.OrchestratorServiceStub(channel)
        self._timeout = timeout
        self._calls = Calls(decoder(), timeout=None)
        self._retry = retry or RetryPolicy()

    async def _call(
        self, method: Callable[..., Awaitable[R]], request: Any, timeout: float | None
    ) -> R:
        # Deadlines and UNAVAILABLE retries are the channel's (RetryInterceptor).
        return await self._calls(method, request, timeout=timeout or self._timeout)

    # -- turns -------------------------------------------------------------------------

    async def send(
        self,
        identity: str,
        text: str,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        timeout: float | None = None,
    ) -> DispatchReceipt:
        """Run a turn on an addressable identity. Retried on UNAVAILABLE only with an
        ``idempotency_key`` (a repeated key returns the original receipt)."""
        value = DispatchInput(
            text,
            DispatchOrigin.SYSTEM,
            correlation_id=correlation_id,
            idempotency_key=idempotency_key,
        )
        request = svc.SendRequest(identity=identity, input=dispatch_input_to_proto(value))
        reply = await self._call(self._stub.Send, request, timeout)
        return receipt_from_proto(reply.receipt)

    async def dispatch(
        self,
        identity: str,
        text: str,
        *,
        origin: DispatchOrigin = DispatchOrigin.SYSTEM,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        timeout: float | None = None,
    ) -> DispatchReceipt:
        """As :meth:`send`, but also reaches internal-only identities."""
        value = DispatchInput(
            text, origin, correlation_id=correlation_id, idempotency_key=idempotency_key
        )
        request = svc.DispatchRequest(identity=identity, input=dispatch_input_to_proto(value))
        reply = await self._call(self._stub.Dispatch, request, timeout)
        return receipt_from_proto(reply.receipt)

    # -- status ------------------------------------------------------------------------

    async def status(self, identity: str, *, timeout: float | None = None) -> IdentityStatus:
        request = svc.GetIdentityStatusRequest(identity=identity)
        reply = await self._call(self._stub.GetIdentityStatus, request, timeout)
        return status_from_proto(reply.status)

    async def list_statuses_page(
        self,
        *,
        state: IdentityLifecycleState | None = None,
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Page[IdentityStatus]:
        request = svc.ListIdentityStatusesRequest(
            page_size=page_size, page_token=page_token, label_selector=dict(labels or {})
        )
        if state is not None:
            request.state = state_to_proto(state)
        reply = await self._call(self._stub.ListIdentityStatuses, request, timeout)
        return Page(
            tuple(status_from_proto(s) for s in reply.statuses),
            reply.next_page_token,
            tuple(
                BackendCondition(c.backend, c.reason, c.detail) for c in reply.backend_conditions
            ),
            _roster_problem(reply),
        )

    async def list_statuses(
        self,
        *,
        state: IdentityLifecycleState | None = None,
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> AsyncIterator[IdentityStatus]:
        """Every matching status, ordered by identity, fetching pages as it goes."""
        token = ""
        while True:
            page = await self.list_statuses_page(
                state=state, labels=labels, page_size=page_size, page_token=token, timeout=timeout
            )
            for status in page.items:
                yield status
            token = page.next_page_token
            if not token:
                return

    # -- lifecycle ---------------------------------------------------------------------

    async def reconcile(self, *, timeout: float | None = None) -> ReconcileResult:
        """One reconcile cycle on the replica this client reaches."""
        reply = await self._call(self._stub.Reconcile, svc.ReconcileRequest(), timeout)
        return ReconcileResult(
            roster_revision=reply.roster_revision,
            activated=tuple(reply.activated),
            retired=tuple(reply.retired),
            respawned=tuple(reply.respawned),
            failed=tuple(ReconcileFailure(f.identity, f.reason, f.message) for f in reply.failed),
            edges_added=tuple(edge_from_proto(e) for e in reply.edges_added),
            edges_removed=tuple(edge_from_proto(e) for e in reply.edges_removed),
            roster_problem=_roster_problem(reply),
        )

    async def reset(
        self, identity: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> IdentityStatus:
        """Start a new continuity generation. A ``request_id`` is generated when not
        given, so a retried reset (same id) resets once."""
        request = svc.ResetIdentityRequest(
            identity=identity, request_id=request_id or uuid.uuid4().hex
        )
        reply = await self._call(self._stub.ResetIdentity, request, timeout)
        return status_from_proto(reply.status)

    async def retire(self, identity: str, *, timeout: float | None = None) -> IdentityStatus:
        request = svc.RetireIdentityRequest(identity=identity)
        reply = await self._call(self._stub.RetireIdentity, request, timeout)
        return status_from_proto(reply.status)

    async def suspend(self, identity: str, *, timeout: float | None = None) -> IdentityStatus:
        request = svc.SuspendIdentityRequest(identity=identity)
        reply = await self._call(self._stub.SuspendIdentity, request, timeout)
        return status_from_proto(reply.status)

    async def resume(self, identity: str, *, timeout: float | None = None) -> IdentityStatus:
        request = svc.ResumeIdentityRequest(identity=identity)
        reply = await self._call(self._stub.ResumeIdentity, request, timeout)
        return status_from_proto(reply.status)

    # -- events --------------------------------------------------------------------------

    async def list_events_page(
        self,
        after_seq: int = 0,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> EventPage:
        request = svc.ListEventsRequest(
            after_seq=after_seq, page_size=page_size, page_token=page_token
        )
        reply = await self._call(self._stub.ListEvents, request, timeout)
        return EventPage(
            tuple(event_from_proto(e) for e in reply.events),
            reply.next_page_token,
            reply.latest_cursor,
        )

    async def list_events(
        self, after_seq: int = 0, *, page_size: int = 0, timeout: float | None = None
    ) -> AsyncIterator[MobStructuralEventEnvelope]:
        """The events after ``after_seq`` up to the frontier at the first call; ends there
        (use :meth:`events` to keep following)."""
        token = ""
        while True:
            page = await self.list_events_page(
                after_seq, page_size=page_size, page_token=token, timeout=timeout
            )
            for event in page.events:
                yield event
            token = page.next_page_token
            if not token:
                return

    def events(
        self,
        after_seq: int = 0,
        *,
        reconnect_timeout: float | None = DEFAULT_RECONNECT_TIMEOUT,
        on_reconnect: OnReconnect | None = None,
    ) -> EventStream:
        """Follow the event log from ``after_seq``: catch-up, then live, resuming from the
        last cursor after a disconnect (see :class:`~mobkit.client.events.EventStream`)."""
        return EventStream(
            self._stub.WatchEvents,
            after_seq,
            retry=self._retry,
            reconnect_timeout=reconnect_timeout,
            on_reconnect=on_reconnect,
        )

    # -- topology ------------------------------------------------------------------------

    async def modules(self, *, timeout: float | None = None) -> list[ModuleStatus]:
        """Every configured module with its health, restarts, tools and last error."""
        out: list[ModuleStatus] = []
        token = ""
        while True:
            reply = await self._call(
                self._stub.ListModules, svc.ListModulesRequest(page_token=token), timeout
            )
            out.extend(module_status_from_proto(m) for m in reply.modules)
            token = reply.next_page_token
            if not token:
                return out

    async def topology_page(
        self,
        identity: str | None = None,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> EdgePage:
        request = svc.GetTopologyRequest(page_size=page_size, page_token=page_token)
        if identity is not None:
            request.identity = identity
        reply = await self._call(self._stub.GetTopology, request, timeout)
        return EdgePage(
            tuple(edge_from_proto(e) for e in reply.edges),
            reply.next_page_token,
            reply.total_edges,
        )

    async def topology(
        self, identity: str | None = None, *, page_size: int = 0, timeout: float | None = None
    ) -> AsyncIterator[ManagedPeerEdge]:
        """The managed peer edges in force (those touching ``identity`` when given)."""
        token = ""
        while True:
            page = await self.topology_page(
                identity, page_size=page_size, page_token=token, timeout=timeout
            )
            for edge in page.edges:
                yield edge
            token = page.next_page_token
            if not token:
                return


def _roster_problem(reply: Any) -> RosterProblem | None:
    return problem_from_proto(reply.roster_problem) if reply.HasField("roster_problem") else None
