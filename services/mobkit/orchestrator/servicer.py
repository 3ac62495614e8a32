"""OrchestratorService: proto <-> domain and error translation only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from mobkit.core import errors as e
from mobkit.core import page_token
from mobkit.flows.errors import TurnNotFound
from mobkit.gen.orchestrator.v1 import orchestrator_pb2 as pb
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2_grpc as svc_grpc
from mobkit.orchestrator.forward_link import serve_forwarded
from mobkit.orchestrator.orchestrator import Orchestrator, ReconcileReport
from mobkit.orchestrator.ports import Events
from mobkit.orchestrator.routing import FORWARDED, LOCAL_ONLY
from mobkit.orchestrator.status_pages import StatusFilter
from mobkit.orchestrator.streaming import StreamingRpcs
from mobkit.orchestrator.ticket_desk import TicketDesk
from mobkit.orchestrator.ticket_rpcs import TicketRpcs
from mobkit.runtime.domain import (
    CallbackUnavailable,
    ModelFailed,
    ModelUnavailable,
    SessionNotFound,
)
from mobkit.runtime.sdk import ProgressSink
from mobkit.server.conditions import BACKEND_UNAVAILABLE, BackendConditions
from mobkit.server.errors import ErrorTable, service_errors
from mobkit.wire.modules import ERRORS as MODULE_ERRORS
from mobkit.wire.modules import status_to_proto as module_status_to_proto
from mobkit.wire.orchestrator import (
    dispatch_input_from_proto,
    event_to_proto,
    position_page_after,
    position_page_token,
    receipt_to_proto,
    state_from_proto,
    status_page_after,
    status_page_token,
    status_to_proto,
)
from mobkit.wire.roster import problem_to_proto
from mobkit.wire.topology import edge_to_proto

SERVICE_NAME = "mobkit.orchestrator.v1.OrchestratorService"
DEFAULT_PAGE, MAX_PAGE = 100, 1000
ERRORS: ErrorTable = service_errors(
    e.IdentityNotFound,
    e.NotAddressable,
    e.NotActive,
    e.InvalidTransition,
    e.StaleEventCursor,
    e.TopologyViolation,
    e.CustomizerFailed,
    e.RosterInvalid,
    e.SelfEdge,
    *e.CONTINUITY_ERRORS,
    SessionNotFound,
    CallbackUnavailable,  # an agent called back where its turn has no callback
    ModelUnavailable,  # an llm agent's model (its turn rolled back)
    ModelFailed,
    *MODULE_ERRORS,  # a turn's tool calls
    TurnNotFound,  # GetTurn, WatchTurn
    # The roster the orchestrator reconciles is its own state, not the request's
    # argument (the roster service answers INVALID_ARGUMENT).
    overrides={e.RosterInvalid: grpc.StatusCode.FAILED_PRECONDITION},
)


def _page(requested: int) -> int:
    return page_token.page_size(requested, DEFAULT_PAGE, MAX_PAGE)


def _flag(context: grpc.aio.ServicerContext, key: str) -> bool:
    return any(k == key for k, _ in (context.invocation_metadata() or ()))


def _routing(context: grpc.aio.ServicerContext) -> dict[str, Any]:
    """Forwarded calls are never forwarded again; waits end before the caller's deadline."""
    remaining = context.time_remaining()
    timeout = None if remaining is None or remaining > 3600 else max(0.0, remaining - 0.05)
    return {"forwarded": _flag(context, FORWARDED), "timeout": timeout}


def report_to_proto(r: ReconcileReport) -> svc.ReconcileResponse:
    return svc.ReconcileResponse(
        roster_revision=r.roster_revision,
        activated=r.activated,
        retired=r.retired,
        respawned=r.respawned,
        failed=[pb.ReconcileFailure(identity=i, reason=c, message=m) for i, c, m in r.failed],
        edges_added=[edge_to_proto(x) for x in r.edges_added],
        edges_removed=[edge_to_proto(x) for x in r.edges_removed],
        roster_problem=problem_to_proto(r.roster_problem) if r.roster_problem else None,
    )


class OrchestratorServicer(TicketRpcs, StreamingRpcs, svc_grpc.OrchestratorServiceServicer):
    def __init__(
        self,
        orchestrator: Orchestrator,
        events: Events,
        conditions: BackendConditions | None = None,
        tickets: TicketDesk | None = None,
    ) -> None:
        self.o = orchestrator
        self.events = events
        self.conditions = conditions or BackendConditions()
        self.tickets = tickets  # SubmitTurn, GetTurn, WatchTurn (TicketRpcs)

    def _routing_of(self, context: grpc.aio.ServicerContext) -> dict[str, Any]:
        return _routing(context)

    async def Reconcile(
        self, request: svc.ReconcileRequest, context: grpc.aio.ServicerContext
    ) -> svc.ReconcileResponse:
        return report_to_proto(await self.o.reconcile())

    async def GetIdentityStatus(
        self, request: svc.GetIdentityStatusRequest, context: grpc.aio.ServicerContext
    ) -> svc.GetIdentityStatusResponse:
        status = await self.o.get_status(request.identity, forwarded=_flag(context, FORWARDED))
        return svc.GetIdentityStatusResponse(status=status_to_proto(status))

    async def ListIdentityStatuses(
        self, request: svc.ListIdentityStatusesRequest, context: grpc.aio.ServicerContext
    ) -> svc.ListIdentityStatusesResponse:
        size, after = _page(request.page_size), status_page_after(request.page_token)
        flt = StatusFilter(
            state_from_proto(request.state) if request.HasField("state") else None,
            dict(request.label_selector),
        )
        page, more = await self.o.statuses_page(
            after,
            size,
            flt,
            local_only=_flag(context, LOCAL_ONLY),
            own_view=self.conditions.holds("etcd", BACKEND_UNAVAILABLE),
        )
        return svc.ListIdentityStatusesResponse(
            statuses=[status_to_proto(s) for s in page],
            next_page_token=status_page_token(page[-1].identity) if more and page else "",
            backend_conditions=[
                svc.BackendCondition(backend=c.backend, reason=c.reason, detail=c.detail)
                for c in self.conditions.current()
            ],
            roster_problem=problem_to_proto(problem)
            if (problem := self.o.roster_problem)
            else None,
        )

    async def Send(
        self, request: svc.SendRequest, context: grpc.aio.ServicerContext
    ) -> svc.SendResponse:
        receipt = await self.o.send(
            request.identity, dispatch_input_from_proto(request.input), **_routing(context)
        )
        return svc.SendResponse(receipt=receipt_to_proto(receipt))

    async def Dispatch(
        self, request: svc.DispatchRequest, context: grpc.aio.ServicerContext
    ) -> svc.DispatchResponse:
        receipt = await self.o.dispatch(
            request.identity, dispatch_input_from_proto(request.input), **_routing(context)
        )
        return svc.DispatchResponse(receipt=receipt_to_proto(receipt))

    async def ForwardStream(
        self,
        request_iterator: AsyncIterator[svc.ForwardStreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[svc.ForwardStreamResponse]:
        async for answer in serve_forwarded(request_iterator, self._forwarded, ERRORS):
            yield answer

    async def _forwarded(
        self,
        request: svc.ForwardStreamRequest,
        timeout: float | None,
        progress: ProgressSink | None,
    ) -> pb.DispatchReceipt:
        """One call of ForwardStream: a Send or Dispatch, forwarded already."""
        if request.HasField("send"):
            send = request.send
            receipt = await self.o.send(
                send.identity,
                dispatch_input_from_proto(send.input),
                forwarded=True,
                timeout=timeout,
                progress=progress,
            )
        elif request.HasField("dispatch"):
            dispatch = request.dispatch
            receipt = await self.o.dispatch(
                dispatch.identity,
                dispatch_input_from_proto(dispatch.input),
                forwarded=True,
                timeout=timeout,
                progress=progress,
            )
        else:
            raise e.InvalidArgument("call", "a forwarded call is a send or a dispatch")
        return receipt_to_proto(receipt)

    async def ResetIdentity(
        self, request: svc.ResetIdentityRequest, context: grpc.aio.ServicerContext
    ) -> svc.ResetIdentityResponse:
        status = await self.o.reset(
            request.identity, request_id=request.request_id, forwarded=_flag(context, FORWARDED)
        )
        return svc.ResetIdentityResponse(status=status_to_proto(status))

    async def RetireIdentity(
        self, request: svc.RetireIdentityRequest, context: grpc.aio.ServicerContext
    ) -> svc.RetireIdentityResponse:
        status = await self.o.retire(request.identity, forwarded=_flag(context, FORWARDED))
        return svc.RetireIdentityResponse(status=status_to_proto(status))

    async def SuspendIdentity(
        self, request: svc.SuspendIdentityRequest, context: grpc.aio.ServicerContext
    ) -> svc.SuspendIdentityResponse:
        status = await self.o.suspend(request.identity, forwarded=_flag(context, FORWARDED))
        return svc.SuspendIdentityResponse(status=status_to_proto(status))

    async def ResumeIdentity(
        self, request: svc.ResumeIdentityRequest, context: grpc.aio.ServicerContext
    ) -> svc.ResumeIdentityResponse:
        status = await self.o.resume(request.identity, forwarded=_flag(context, FORWARDED))
        return svc.ResumeIdentityResponse(status=status_to_proto(status))

    async def ListEvents(
        self, request: svc.ListEventsRequest, context: grpc.aio.ServicerContext
    ) -> svc.ListEventsResponse:
        after = request.after_seq
        if request.page_token:
            after = position_page_after(request.page_token)
        size = _page(request.page_size)
        events, latest = await self.events.list(after, size)
        more = len(events) == size and events[-1].cursor < latest
        return svc.ListEventsResponse(
            events=[event_to_proto(x) for x in events],
            next_page_token=position_page_token(events[-1].cursor) if more else "",
            latest_cursor=latest,
        )

    async def WatchEvents(
        self, request: svc.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[svc.WatchEventsResponse]:
        async for event in self.events.watch(request.after_seq):
            yield svc.WatchEventsResponse(structural=event_to_proto(event))

    async def GetTopology(
        self, request: svc.GetTopologyRequest, context: grpc.aio.ServicerContext
    ) -> svc.GetTopologyResponse:
        size, start = _page(request.page_size), position_page_after(request.page_token)
        edges = sorted(self.o.edges)
        if request.HasField("identity"):
            edges = [x for x in edges if request.identity in (x.a, x.b)]
        chunk = edges[start : start + size]
        more = start + size < len(edges)
        return svc.GetTopologyResponse(
            edges=[edge_to_proto(x) for x in chunk],
            next_page_token=position_page_token(start + size) if more else "",
            total_edges=len(edges),
        )

    async def ListModules(
        self, request: svc.ListModulesRequest, context: grpc.aio.ServicerContext
    ) -> svc.ListModulesResponse:
        size, start = _page(request.page_size), position_page_after(request.page_token)
        modules = self.o.modules.statuses() if self.o.modules else []
        chunk = modules[start : start + size]
        more = start + size < len(modules)
        return svc.ListModulesResponse(
            modules=[module_status_to_proto(m) for m in chunk],
            next_page_token=position_page_token(start + size) if more else "",
        )
