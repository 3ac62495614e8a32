"""Turn tickets (``SubmitTurn`` / ``GetTurn`` / ``WatchTurn``): what a ticket is.

A ticket is one stored record, written once by its identity's owner under the owner's
fencing token (:mod:`mobkit.orchestrator.ticket_store`), and a turn with one
idempotency key: the caller's, else one derived from the ticket. The turn's receipt,
committed with its checkpoint, *is* the ticket's completion: nothing is written when
it succeeds. Only a turn that fails for good writes the ticket again (its failure).
A keyless ticket whose turn commits within ``WRITE_GRACE`` needs no record at all:
its id names its identity and time, and its receipt answers for it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from mobkit.core.bounds import MAX_NAME_BYTES
from mobkit.core.types import DispatchInput, DispatchReceipt

TICKET_PREFIX = "turn-"
DERIVED_KEY_PREFIX = "ticket:"


class TurnState(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class TicketRecord:
    """What the store keeps of a ticket. ``message`` carries the turn's idempotency
    key (always set); ``expires_ms`` is when the ticket stops answering: never after
    its receipt (written later, kept as long) is gone."""

    turn_id: str
    identity: str
    message: DispatchInput
    dispatch: bool
    submitted_ms: int
    expires_ms: int
    failure_reason: str | None = None
    failure_message: str | None = None
    attempts: int = 0
    updated_ms: int = 0

    @property
    def key(self) -> str:
        key = self.message.idempotency_key
        assert key is not None
        return key

    def failed(self, reason: str, message: str, attempts: int, now_ms: int) -> TicketRecord:
        return replace(
            self,
            failure_reason=reason,
            failure_message=message,
            attempts=attempts,
            updated_ms=now_ms,
        )


@dataclass(frozen=True, slots=True)
class Ticket:
    """A ticket as GetTurn answers it: its record and, once done, its receipt."""

    turn_id: str
    identity: str
    state: TurnState
    receipt: DispatchReceipt | None
    failure_reason: str | None
    failure_message: str | None
    submitted_ms: int
    updated_ms: int
    attempts: int

    @classmethod
    def of(
        cls, record: TicketRecord, receipt: DispatchReceipt | None, *, attempts: int = 0
    ) -> Ticket:
        if receipt is not None:
            state = TurnState.SUCCEEDED
        elif record.failure_reason is not None:
            state = TurnState.FAILED
        else:
            state = TurnState.PENDING
        return cls(
            turn_id=record.turn_id,
            identity=record.identity,
            state=state,
            receipt=receipt,
            failure_reason=record.failure_reason,
            failure_message=record.failure_message,
            submitted_ms=record.submitted_ms,
            updated_ms=record.updated_ms or record.submitted_ms,
            attempts=max(attempts, record.attempts, 1 if receipt is not None else 0),
        )

    @property
    def finished(self) -> bool:
        return self.state is not TurnState.PENDING


def ticket_id(identity: str, idempotency_key: str | None, now_ms: int) -> str:
    """The same for the same key on the same identity. Without a key: random, and
    naming its identity and submit time when they fit (``turn-<ms>-<random>.<identity>``),
    so that its receipt alone can answer for it (:func:`receipt_only`)."""
    if idempotency_key is None:
        named = f"{TICKET_PREFIX}{now_ms:x}-{os.urandom(8).hex()}.{identity}"
        return (
            named if len(named.encode()) <= MAX_NAME_BYTES else TICKET_PREFIX + os.urandom(12).hex()
        )
    digest = hashlib.sha256(f"{identity}\0{idempotency_key}".encode()).hexdigest()[:32]
    return TICKET_PREFIX + digest


def receipt_only(turn_id: str) -> tuple[str, int] | None:
    """The identity and submit time a keyless ticket's id names, else None."""
    head, dot, identity = turn_id.partition(".")
    stamp, dash, tail = head.removeprefix(TICKET_PREFIX).partition("-")
    if not (dot and dash and identity and len(tail) == 16 and head.startswith(TICKET_PREFIX)):
        return None
    try:
        return identity, int(stamp, 16)
    except ValueError:
        return None


def succeeded(turn_id: str, identity: str, submitted_ms: int, receipt: DispatchReceipt) -> Ticket:
    """A keyless ticket whose turn committed before its record was needed."""
    return Ticket(
        turn_id, identity, TurnState.SUCCEEDED, receipt, None, None, submitted_ms, submitted_ms, 1
    )


def turn_message(turn_id: str, message: DispatchInput) -> DispatchInput:
    """The ticket's turn: the caller's key makes it the turn a Send with that key is;
    without one, a key of the ticket's own."""
    if message.idempotency_key:
        return message
    return replace(message, idempotency_key=DERIVED_KEY_PREFIX + turn_id)


class TicketStore(Protocol):
    async def create(self, record: TicketRecord, fencing_token: int) -> tuple[TicketRecord, bool]:
        """Store ``record`` unless its turn id exists (then: that one, False), only
        while ``fencing_token`` is its identity's lease token (0: while no replica
        holds the identity); else ``StaleFencingToken``."""
        ...

    async def get(self, turn_id: str) -> TicketRecord | None: ...

    async def open_tickets_of(self, identities: Collection[str]) -> dict[str, list[TicketRecord]]:
        """Each identity's tickets not yet known finished (every identity asked is a key)."""
        ...

    async def fail(self, record: TicketRecord, fencing_token: int) -> None:
        """Store a ticket's failure (``record.failure_*``) under the owner's token,
        whether or not its record was written yet."""
        ...

    def finished(self, record: TicketRecord) -> None:
        """``record`` is finished: its open marker goes with a later write."""
        ...

    async def close_finished(self, identity: str, fencing_token: int) -> None:
        """Drop the open markers of finished tickets now (after a recovery)."""
        ...
