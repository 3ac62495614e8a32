"""Turn tickets on a replica: accept them where the identity's owner is, run them in
the owner's ordinary turn path, and find the ones a previous owner left.

- ``submit``: the owner writes the ticket (one fenced etcd txn) and starts its turn
  at once; another replica forwards the call to the owner, or, while no replica
  holds the identity, writes it for the next owner to find.
- The turn is a Dispatch with the ticket's idempotency key: its receipt, committed
  with its checkpoint, is the ticket's completion, and a repeated key replays it,
  so however many owners a ticket has its turn runs once.
- On every activation the new owner looks at the identity's open tickets and runs
  those without a receipt (:mod:`mobkit.orchestrator.ticket_recovery`).
- ``WatchTurn`` is :mod:`mobkit.orchestrator.ticket_watch`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any

from mobkit.core.errors import (
    BackendFull,
    BackendUnavailable,
    IdentityNotFound,
    MobKitError,
    NotActive,
    NotAddressable,
    StaleFencingToken,
)
from mobkit.core.identity import parse_identity, parse_name
from mobkit.core.types import AgentAddressability, DispatchInput
from mobkit.flows.errors import TurnNotFound
from mobkit.orchestrator import checkpoint
from mobkit.orchestrator.inputs import check_dispatch_input
from mobkit.orchestrator.orchestrator import Orchestrator
from mobkit.orchestrator.replica import ROUTE_POLL, S
from mobkit.orchestrator.slot import IdentitySlot
from mobkit.orchestrator.ticket_recovery import TicketRecovery
from mobkit.orchestrator.ticket_running import RunningTicket
from mobkit.orchestrator.tickets import (
    DERIVED_KEY_PREFIX,
    TICKET_PREFIX,
    Ticket,
    TicketRecord,
    TicketStore,
    receipt_only,
    succeeded,
    ticket_id,
    turn_message,
)

log = logging.getLogger("mobkit.orchestrator.tickets")

WAITING = (NotActive, BackendUnavailable, BackendFull)
"""A turn that failed with one of these did not run: the ticket waits, then tries again."""
RECENT = 4096
"""Finished tickets this replica answers from memory (WatchTurn right after its turn)."""
WRITE_GRACE = 0.05
"""Seconds a keyless ticket's turn has to commit before its record is written."""


class TicketDesk:
    def __init__(
        self,
        orchestrator: Orchestrator,
        store: TicketStore,
        retention_seconds: float,
        *,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.o = orchestrator
        self.store = store
        self.retention_ms = int(retention_seconds * 1000)
        self._clock_ms = clock_ms
        self._running: dict[str, RunningTicket] = {}
        self._recent: OrderedDict[str, tuple[Ticket, int]] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        recovery = TicketRecovery(
            orchestrator, store, start=self._start, running=self._running, spawn=self._spawn
        )
        orchestrator.when_active(recovery.activated)

    # -- SubmitTurn ---------------------------------------------------------------------

    async def submit(
        self,
        identity: str,
        message: DispatchInput,
        *,
        dispatch: bool,
        forwarded: bool = False,
        timeout: float | None = None,
    ) -> Ticket:
        check_dispatch_input(message)
        slot = self._slot(identity)
        if not dispatch and slot.spec.addressability is AgentAddressability.INTERNAL_ONLY:
            raise NotAddressable(identity)
        now = self._clock_ms()
        turn_id = ticket_id(identity, message.idempotency_key, now)
        known = self._known(turn_id)
        if known is not None:
            return known
        record = TicketRecord(
            turn_id,
            identity,
            turn_message(turn_id, message),
            dispatch,
            now,
            now + self.retention_ms,
        )
        loop = asyncio.get_running_loop()
        wait = timeout if timeout is not None else self.o.lease_ttl.total_seconds() + 2
        deadline = loop.time() + wait
        fleet = self.o.fleet
        # Only a first attempt is fresh: one that failed may have run its turn.
        fresh = message.idempotency_key is None
        while True:
            grant = slot.grant
            if grant is not None:
                with contextlib.suppress(StaleFencingToken):  # lost: find the new owner
                    attempt_fresh, fresh = fresh, False
                    return await self._write(record, grant.fencing_token, fresh=attempt_fresh)
            elif forwarded:
                raise NotActive(identity, slot.state.value)
            else:
                holder = await fleet.owner(identity, recent=True) if fleet is not None else None
                if fleet is not None and holder is not None and holder != self.o.instance:
                    try:
                        left = max(0.1, deadline - loop.time())
                        return await fleet.submit_turn(
                            holder, identity, message, dispatch=dispatch, timeout=left
                        )
                    except (NotActive, BackendUnavailable):
                        fleet.forget_owner(identity)  # gone or going: ask afresh
                elif holder is None:
                    if slot.retired or slot.state is S.BROKEN:
                        raise NotActive(identity, slot.state.value)
                    # No owner: the next one finds it (its acquire comes after this write).
                    with contextlib.suppress(StaleFencingToken):
                        return await self._write(record, 0)
            if loop.time() + ROUTE_POLL >= deadline:
                retry_ms = int(self.o.lease_ttl.total_seconds() * 1000 / 3)
                raise NotActive(identity, "between_owners", retry_after_ms=retry_ms)
            await asyncio.sleep(ROUTE_POLL)

    def _slot(self, identity: str) -> IdentitySlot:
        parse_identity(identity)
        slot = self.o.slots.get(identity)
        if slot is None:
            raise IdentityNotFound(identity)
        return slot

    async def _write(self, record: TicketRecord, token: int, *, fresh: bool = False) -> Ticket:
        """Store the ticket; the owner (``token``) also runs its turn. A ticket without
        a caller's key is ``fresh`` (a random id, stored nowhere): its turn starts at
        once, and when it commits within ``WRITE_GRACE`` its receipt is the durable
        ticket, no record needed (one fsync, not two). Otherwise the record is written
        beside the running turn. Should the write fail, the turn is cancelled (rolled
        back unless its checkpoint already landed -- then it ran once, as a Send whose
        reply was lost)."""
        running = self._start(record, token, fresh=True) if token and fresh else None
        if running is not None and receipt_only(record.turn_id) is not None:
            await asyncio.wait((running.done,), timeout=WRITE_GRACE)
            final = running.done.result() if running.done.done() else None
            if final is not None:  # committed (its receipt), or its failure written
                return final
        try:
            stored, created = await self.store.create(record, token)
        except BaseException:
            if running is not None and running.task is not None:
                running.task.cancel()
            raise
        if not created:  # the same key again: that ticket, as it stands
            return await self._view(stored)
        if token and running is None:
            self._start(stored, token)
        final = running.done.result() if running is not None and running.done.done() else None
        return final if final is not None else Ticket.of(stored, None)

    # -- running a ticket's turn ----------------------------------------------------------

    def _start(self, record: TicketRecord, token: int, *, fresh: bool = False) -> RunningTicket:
        known = self._running.get(record.turn_id)
        if known is not None and known.token == token:
            return known
        future = asyncio.get_running_loop().create_future()
        running = RunningTicket(record, token, future, fresh=fresh)
        self._running[record.turn_id] = running
        running.task = self._spawn(self._drive(running), f"ticket-{record.turn_id}")
        return running

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _drive(self, running: RunningTicket) -> None:
        record, token = running.record, running.token
        identity = record.identity
        final: Ticket | None = None
        try:
            while True:
                slot = self.o.slots.get(identity)
                if slot is None or not slot.held_with(token):
                    return  # handed over: the next owner's activation runs it
                if slot.state is S.ACTIVE:
                    running.attempts += 1
                    try:
                        receipt = await self.o.dispatch(
                            identity,
                            record.message,
                            forwarded=True,
                            progress=running.relay,
                            # A first attempt of a ticket just created here: no receipt yet.
                            fresh_key=running.fresh and running.attempts == 1,
                        )
                    except WAITING:
                        pass
                    except MobKitError as exc:
                        final = await self._fail(running, exc.reason, exc.message)
                        return
                    except Exception as exc:
                        log.exception("ticket %s: its turn failed", record.turn_id)
                        final = await self._fail(running, "INTERNAL", str(exc))
                        return
                    else:
                        final = Ticket.of(
                            record,
                            checkpoint.as_stored(receipt, self.o.receipt_output_limit),
                            attempts=running.attempts,
                        )
                        self.store.finished(record)
                        return
                await asyncio.sleep(ROUTE_POLL)
        finally:
            if self._running.get(record.turn_id) is running:
                del self._running[record.turn_id]
            if final is not None:
                self._remember(final, record.expires_ms)
            if not running.done.done():
                running.done.set_result(final)

    async def _fail(self, running: RunningTicket, reason: str, message: str) -> Ticket | None:
        failed = running.record.failed(reason, message, running.attempts, self._clock_ms())
        try:
            await self.store.fail(failed, running.token)
        except MobKitError as exc:
            # Not recorded: the ticket stays open and its next owner tries it again.
            log.warning("ticket %s: failure not recorded: %s", failed.turn_id, exc)
            return None
        return Ticket.of(failed, None)

    def _remember(self, ticket: Ticket, expires_ms: int) -> None:
        self._recent[ticket.turn_id] = (ticket, expires_ms)
        self._recent.move_to_end(ticket.turn_id)
        while len(self._recent) > RECENT:
            self._recent.popitem(last=False)

    def _known(self, turn_id: str) -> Ticket | None:
        recent = self._recent.get(turn_id)
        if recent is not None:
            if recent[1] > self._clock_ms():
                return recent[0]
            del self._recent[turn_id]
        running = self._running.get(turn_id)
        if running is not None:
            return Ticket.of(running.record, None, attempts=running.attempts)
        return None

    # -- GetTurn / WatchTurn ----------------------------------------------------------------

    async def get(self, turn_id: str) -> Ticket:
        parse_name(turn_id, "turn_id")
        if not turn_id.startswith(TICKET_PREFIX):
            raise TurnNotFound(turn_id)
        known = self._known(turn_id)
        if known is not None:
            return known
        record = await self.store.get(turn_id)
        if record is None:
            return await self._receipt_only(turn_id)
        return await self._view(record)

    async def _receipt_only(self, turn_id: str) -> Ticket:
        """A keyless ticket without a record: its receipt, while its retention lasts."""
        named = receipt_only(turn_id)
        if named is None or named[1] + self.retention_ms <= self._clock_ms():
            raise TurnNotFound(turn_id)
        identity, submitted_ms = named
        stored = await self.o.p.continuity.load_receipt(identity, DERIVED_KEY_PREFIX + turn_id)
        if stored is None:
            raise TurnNotFound(turn_id)
        receipt = checkpoint.decode_receipt(identity, stored.data)
        return succeeded(turn_id, identity, submitted_ms, receipt)

    async def _view(self, record: TicketRecord) -> Ticket:
        running = self._running.get(record.turn_id)
        if running is not None:
            return Ticket.of(running.record, None, attempts=running.attempts)
        receipt = None
        if record.failure_reason is None:
            stored = await self.o.p.continuity.load_receipt(record.identity, record.key)
            if stored is not None:
                receipt = checkpoint.decode_receipt(record.identity, stored.data)
        return Ticket.of(record, receipt)

    def running(self, turn_id: str) -> RunningTicket | None:
        """The ticket's turn when it runs on this replica."""
        return self._running.get(turn_id)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
