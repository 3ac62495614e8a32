"""The turn-ticket RPCs of ``OrchestratorService`` (SubmitTurn, GetTurn, WatchTurn):
proto <-> domain only. The orchestrator's servicer mixes them in; the tickets
themselves are :mod:`mobkit.flows.tickets`'."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from mobkit.core.errors import BackendUnavailable
from mobkit.core.identity import parse_name
from mobkit.events.domain import EventLog
from mobkit.flows.tickets import Ticket, TurnTickets
from mobkit.flows.watch import run_events
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.orchestrator.inputs import check_dispatch_input
from mobkit.wire.orchestrator import dispatch_input_from_proto, event_to_proto
from mobkit.wire.tickets import ticket_to_proto


class TicketRpcs:
    tickets: TurnTickets | None
    ticket_events: EventLog | None

    def _desk(self) -> TurnTickets:
        if self.tickets is None:
            raise BackendUnavailable("turn tickets", "this replica serves no turn tickets")
        return self.tickets

    async def SubmitTurn(
        self, request: svc.SubmitTurnRequest, context: grpc.aio.ServicerContext
    ) -> svc.SubmitTurnResponse:
        message = dispatch_input_from_proto(request.input)
        check_dispatch_input(message)
        ticket = await self._desk().submit(request.identity, message, dispatch=request.dispatch)
        return svc.SubmitTurnResponse(turn=ticket_to_proto(ticket))

    async def GetTurn(
        self, request: svc.GetTurnRequest, context: grpc.aio.ServicerContext
    ) -> svc.GetTurnResponse:
        record = await self._desk().get(parse_name(request.turn_id, "turn_id"))
        return svc.GetTurnResponse(turn=ticket_to_proto(Ticket.of(record)))

    async def WatchTurn(
        self, request: svc.WatchTurnRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[svc.WatchTurnResponse]:
        desk = self._desk()
        turn_id = parse_name(request.turn_id, "turn_id")
        record = await desk.get(turn_id)
        assert self.ticket_events is not None
        finished = record.run.state.terminal
        async for event in run_events(
            self.ticket_events,
            desk.engine.store,
            turn_id,
            request.after_seq or record.events_from,
            finished,
        ):
            yield svc.WatchTurnResponse(event=event_to_proto(event))
        final = await desk.get(turn_id)
        yield svc.WatchTurnResponse(turn=ticket_to_proto(Ticket.of(final)))
