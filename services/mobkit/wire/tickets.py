"""Proto <-> domain for turn tickets (``OrchestratorService.SubmitTurn`` ...)."""

from __future__ import annotations

from mobkit.core.identity import AgentIdentity, FencingToken, SessionId
from mobkit.core.types import DispatchReceipt
from mobkit.flows.tickets import Ticket, TurnState
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.wire.orchestrator import receipt_from_proto, receipt_to_proto

_STATES = {
    TurnState.PENDING: svc.TURN_STATE_PENDING,
    TurnState.SUCCEEDED: svc.TURN_STATE_SUCCEEDED,
    TurnState.FAILED: svc.TURN_STATE_FAILED,
}
_STATES_BACK = {int(v): k for k, v in _STATES.items()}


def ticket_receipt(ticket: Ticket) -> DispatchReceipt | None:
    result = ticket.result
    if result is None or result.proof is None:
        return None
    proof = result.proof
    return DispatchReceipt(
        identity=AgentIdentity(ticket.identity),
        session_id=SessionId(proof.session_id),
        fencing_token=FencingToken(proof.fencing_token),
        checkpoint_version=proof.checkpoint_version,
        output=result.output,
        structured_output=result.structured_output,
        correlation_id=ticket.correlation_id,
        output_truncated=proof.output_truncated,
    )


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
    receipt = ticket_receipt(ticket)
    if receipt is not None:
        msg.receipt.CopyFrom(receipt_to_proto(receipt))
    return msg


def ticket_state(msg: svc.TurnTicket) -> TurnState:
    return _STATES_BACK.get(int(msg.state), TurnState.PENDING)


def ticket_receipt_from_proto(msg: svc.TurnTicket) -> DispatchReceipt | None:
    return receipt_from_proto(msg.receipt) if msg.HasField("receipt") else None
