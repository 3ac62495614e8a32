"""Asynchronous turns (``SubmitTurn`` / ``GetTurn`` / ``WatchTurn``) as one-step runs.

A ticket is a run of a flow of one step on one identity, created by the call rather
than read from the roster, so it gets what runs have: a record in etcd, an owner
through a fenced lease, a new owner after a crash, retention. Its turn carries one
idempotency key (the caller's, else one derived from the ticket), so the turn runs
once however many owners the ticket has, and a caller's key makes it the same turn
a ``Send`` with that key is.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from enum import StrEnum

from mobkit.core.errors import IdentityNotFound, NotAddressable
from mobkit.core.identity import AgentIdentity
from mobkit.core.types import AgentAddressability, DispatchInput
from mobkit.flows.definition import FlowDefinition, FlowStep, IdentityTarget, RetryPolicy
from mobkit.flows.document import MAX_ATTEMPTS
from mobkit.flows.engine import FlowEngine
from mobkit.flows.errors import TurnNotFound
from mobkit.flows.records import RunRecord, now_ms
from mobkit.flows.run import Run, RunState, TargetResult

TICKET_FLOW = "turn-ticket"
TICKET_PREFIX = "turn-"
STEP = "turn"
ATTEMPT_TIMEOUT_SECONDS = 120.0
WAIT_SECONDS = 600.0
"""How long a ticket waits, retrying, for its identity to be Active."""
WAITING = frozenset({"NOT_ACTIVE", "BACKEND_UNAVAILABLE", "BACKEND_FULL"})
"""Failures a ticket waits out; any other ends it."""


class TurnState(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Ticket:
    turn_id: str
    identity: str
    state: TurnState
    result: TargetResult | None
    failure_reason: str | None
    failure_message: str | None
    submitted_ms: int
    updated_ms: int
    attempts: int
    correlation_id: str | None

    @classmethod
    def of(cls, record: RunRecord) -> Ticket:
        run = record.run
        step = run.steps.get(STEP)
        identity = record.flow.steps[0].target
        assert isinstance(identity, IdentityTarget)
        state = {
            RunState.RUNNING: TurnState.PENDING,
            RunState.SUCCEEDED: TurnState.SUCCEEDED,
        }.get(run.state, TurnState.FAILED)
        failure = run.failure
        return cls(
            turn_id=run.run_id,
            identity=identity.identity,
            state=state,
            result=step.results.get(identity.identity) if step is not None else None,
            failure_reason=failure.reason if failure else None,
            failure_message=failure.message if failure else None,
            submitted_ms=record.created_ms,
            updated_ms=record.updated_ms,
            attempts=step.attempts.get(identity.identity, 0) if step is not None else 0,
            correlation_id=run.correlation_id,
        )


def _ticket_flow(identity: str, wait_seconds: float) -> FlowDefinition:
    # Backoff doubling to 2 s: about wait_seconds / 2 attempts fit the wait.
    attempts = max(1, min(MAX_ATTEMPTS, int(wait_seconds / 2) + 5))
    retry = RetryPolicy(attempts, 0.1, 2.0, WAITING)
    target = IdentityTarget(AgentIdentity(identity))
    step = FlowStep(STEP, target, timeout_seconds=ATTEMPT_TIMEOUT_SECONDS, retry=retry)
    return FlowDefinition(TICKET_FLOW, (step,))


def ticket_id(identity: str, idempotency_key: str | None) -> str:
    """The same for the same key on the same identity; random without a key."""
    if idempotency_key is None:
        return TICKET_PREFIX + os.urandom(12).hex()
    digest = hashlib.sha256(f"{identity}\0{idempotency_key}".encode()).hexdigest()[:32]
    return TICKET_PREFIX + digest


class TurnTickets:
    def __init__(self, engine: FlowEngine, *, wait_seconds: float = WAIT_SECONDS) -> None:
        self.engine = engine
        self.wait_seconds = wait_seconds

    async def submit(self, identity: str, message: DispatchInput, *, dispatch: bool) -> Ticket:
        snapshot = await self.engine.roster.snapshot(fresh=True)
        spec = snapshot.spec(identity)
        if spec is None:
            raise IdentityNotFound(identity)
        if not dispatch and spec.addressability is AgentAddressability.INTERNAL_ONLY:
            raise NotAddressable(identity)
        turn_id = ticket_id(identity, message.idempotency_key)
        now = now_ms()
        run = Run(
            turn_id,
            TICKET_FLOW,
            snapshot.revision,
            message.content,
            origin=message.origin.value,
            correlation_id=message.correlation_id,
            idempotency_key=message.idempotency_key or f"{turn_id}:turn",
        )
        record = RunRecord(run, (_ticket_flow(identity, self.wait_seconds),), now, now)
        # Driven where it was submitted: no claim round between a ticket and its turn.
        stored = await self.engine.submit(record, drive_here=True)
        return Ticket.of(stored)

    async def get(self, turn_id: str) -> RunRecord:
        record = await self.engine.store.get(turn_id) if turn_id.startswith(TICKET_PREFIX) else None
        if record is None:
            raise TurnNotFound(turn_id)
        return record
