"""The turn-ticket RPCs of ``OrchestratorService`` (SubmitTurn, GetTurn, WatchTurn):
proto <-> domain only. The orchestrator's servicer mixes them in; the tickets
themselves are :mod:`mobkit.orchestrator.ticket_desk`'s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from mobkit.core.errors import BackendUnavailable
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.orchestrator.ticket_desk import TicketDesk
from mobkit.orchestrator.ticket_watch import watch
from mobkit.runtime.sdk import TurnProgress
from mobkit.wire.orchestrator import dispatch_input_from_proto
from mobkit.wire.runtime_stream import turn_progress_to_proto
from mobkit.wire.tickets import ticket_to_proto


class TicketRpcs:
    tickets: TicketDesk | None

    def _routing_of(self, context: grpc.aio.ServicerContext) -> dict[str, Any]:
        """``forwarded`` and ``timeout`` of the call (the servicer's rules)."""
        raise NotImplementedError

    def _desk(self) -> TicketDesk:
        if self.tickets is None:
            raise BackendUnavailable("turn tickets", "this replica serves no turn tickets")
        return self.tickets

    async def SubmitTurn(
        self, request: svc.SubmitTurnRequest, context: grpc.aio.ServicerContext
    ) -> svc.SubmitTurnResponse:
        message = dispatch_input_from_proto(request.input)
        ticket = await self._desk().submit(
            request.identity, message, dispatch=request.dispatch, **self._routing_of(context)
        )
        return svc.SubmitTurnResponse(turn=ticket_to_proto(ticket))

    async def GetTurn(
        self, request: svc.GetTurnRequest, context: grpc.aio.ServicerContext
    ) -> svc.GetTurnResponse:
        return svc.GetTurnResponse(turn=ticket_to_proto(await self._desk().get(request.turn_id)))

    async def WatchTurn(
        self, request: svc.WatchTurnRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[svc.WatchTurnResponse]:
        desk = self._desk()
        ticket = await desk.get(request.turn_id)
        forwarded = self._routing_of(context)["forwarded"]
        async for item in watch(desk, ticket, progress=request.progress, forwarded=forwarded):
            if isinstance(item, TurnProgress):
                yield svc.WatchTurnResponse(progress=turn_progress_to_proto(item))
            else:
                yield svc.WatchTurnResponse(turn=ticket_to_proto(item))
