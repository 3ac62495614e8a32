"""Proto <-> domain for turn tickets (``OrchestratorService.SubmitTurn`` ...)."""

from __future__ import annotations

from mobkit.core.types import DispatchReceipt
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.orchestrator.tickets import Ticket, TurnState
from mobkit.wire.orchestrator import receipt_from_proto, receipt_to_proto

_STATES = {
    TurnState.PENDING: svc.TURN_STATE_PENDING,
    TurnState.SUCCEEDED: svc.TURN_STATE_SUCCEEDED,
    TurnState.FAILED: svc.TURN_STATE_FAILED,
}
_STATES_BACK = {int(v): k for k, v in _STATES.items()}


def ticket_to_proto(ticket: Ticket) -> svc.TurnTicket:
    msg = svc.TurnTicket(
        turn_id=ticket.turn_id,
        identity=ticket.identity,
        state=_STATES[ticket.state],
        failure_reason=ticket.failure_reason or "",
        failure_message=ticket.failure_message or "",
        submitted_at_ms=ticket.submitted_ms,
        updated_at_ms=ticket.updated_ms,
        attempts=ticket.attempts,
    )
    if ticket.receipt is not None:
        msg.receipt.CopyFrom(receipt_to_proto(ticket.receipt))
    return msg


def ticket_state(msg: svc.TurnTicket) -> TurnState:
    return _STATES_BACK.get(int(msg.state), TurnState.PENDING)


def ticket_receipt_from_proto(msg: svc.TurnTicket) -> DispatchReceipt | None:
    return receipt_from_proto(msg.receipt) if msg.HasField("receipt") else None


def ticket_from_proto(msg: svc.TurnTicket) -> Ticket:
    return Ticket(
        turn_id=msg.turn_id,
        identity=msg.identity,
        state=ticket_state(msg),
        receipt=ticket_receipt_from_proto(msg),
        failure_reason=msg.failure_reason or None,
        failure_message=msg.failure_message or None,
        submitted_ms=msg.submitted_at_ms,
        updated_ms=msg.updated_at_ms,
        attempts=msg.attempts,
    )
