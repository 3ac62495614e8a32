"""``WatchTurn`` on a replica: a ticket's progress and final state, wherever its turn
runs. On the replica running it, the watch follows the turn itself; on another, it
relays the owner's own watch of it (progress included), so a client behind a load
balancer sees the same stream whichever replica it reached. Between owners, or when
the owner cannot be reached, it reads the ticket again, backing off to once a second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from mobkit.core.errors import MobKitError
from mobkit.orchestrator.replica import ROUTE_POLL
from mobkit.orchestrator.ticket_running import follow
from mobkit.orchestrator.tickets import Ticket
from mobkit.runtime.sdk import TurnProgress

if TYPE_CHECKING:
    from mobkit.orchestrator.ticket_desk import TicketDesk

log = logging.getLogger("mobkit.orchestrator.tickets")


async def watch(
    desk: TicketDesk, ticket: Ticket, *, progress: bool, forwarded: bool = False
) -> AsyncIterator[TurnProgress | Ticket]:
    """From ``ticket`` as just read: the turn's progress (when ``progress``), then the
    finished ticket (at once when it is finished already, the usual case right after
    SubmitTurn). A ``forwarded`` watch (a peer relaying for its client) never goes on
    to a third replica: it follows the turn here or reads the ticket."""
    turn_id = ticket.turn_id
    delay = ROUTE_POLL / 2
    while not ticket.finished:
        running = desk.running(turn_id)
        if running is not None:
            async for event in follow(running, progress):
                yield event
            final = running.done.result() if running.done.done() else None
            if final is not None:
                ticket = final
                break
        else:
            relayed = None if forwarded else await _owner_elsewhere(desk, ticket)
            if relayed is not None:
                async for item in _from_owner(desk, relayed, ticket, progress):
                    if isinstance(item, TurnProgress):
                        yield item
                    else:
                        ticket = item
                if ticket.finished:
                    break
            await asyncio.sleep(delay)  # between owners, or the owner went away
            delay = min(1.0, delay * 2)
        ticket = await desk.get(turn_id)
    yield ticket


async def _owner_elsewhere(desk: TicketDesk, ticket: Ticket) -> str | None:
    fleet, here = desk.o.fleet, desk.o.instance
    if fleet is None:
        return None
    try:
        holder = await fleet.owner(ticket.identity, recent=True)
    except MobKitError:
        return None
    return holder if holder is not None and holder != here else None


async def _from_owner(
    desk: TicketDesk, holder: str, ticket: Ticket, progress: bool
) -> AsyncIterator[TurnProgress | Ticket]:
    """The owner's watch, until it ends or fails (then the caller reads the ticket)."""
    fleet = desk.o.fleet
    assert fleet is not None
    try:
        async for item in fleet.watch_turn(holder, ticket.turn_id, progress=progress):
            yield item
    except (MobKitError, ValueError) as exc:  # gone or going: ask afresh next time
        fleet.forget_owner(ticket.identity)
        log.debug("watch of %s at %s ended: %s", ticket.turn_id, holder, exc)
