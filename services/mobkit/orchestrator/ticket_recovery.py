"""A new owner runs the turn tickets that earlier owners left open.

Activations come in bursts (a cold start claims hundreds of identities at once), so an
activation only queues its identity; one task reads the open tickets of everything
queued in one look at the store, then starts the turns that have no receipt yet. A
ticket whose receipt the session holds already ran: it is only marked finished.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Container, Coroutine
from typing import Any

from mobkit.core.errors import MobKitError
from mobkit.orchestrator.orchestrator import Orchestrator
from mobkit.orchestrator.slot import IdentitySlot
from mobkit.orchestrator.tickets import TicketRecord, TicketStore

log = logging.getLogger("mobkit.orchestrator.tickets")

MAX_BACKOFF = 5.0
"""Seconds between looks at the store while it fails (the identities stay queued)."""


class TicketRecovery:
    def __init__(
        self,
        orchestrator: Orchestrator,
        store: TicketStore,
        *,
        start: Callable[[TicketRecord, int], object],
        running: Container[str],
        spawn: Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]],
    ) -> None:
        self.o = orchestrator
        self.store = store
        self._start = start
        self._running = running
        self._spawn = spawn
        self._queued: dict[str, int] = {}  # identity -> the fencing token it became Active with
        self._task: asyncio.Task[None] | None = None

    def activated(self, slot: IdentitySlot) -> None:
        """``slot`` became Active here: queue it for a look at its open tickets."""
        if slot.grant is None:
            return
        self._queued[slot.identity] = slot.grant.fencing_token
        if self._task is None or self._task.done():
            self._task = self._spawn(self._drain(), "ticket-recovery")

    def _held(self, identity: str, token: int) -> IdentitySlot | None:
        """The identity's slot while it is still held under ``token``."""
        slot = self.o.slots.get(identity)
        return slot if slot is not None and slot.held_with(token) else None

    async def _drain(self) -> None:
        failures = 0
        while self._queued:
            await asyncio.sleep(0)  # the rest of an activation burst joins this batch
            batch = {i: t for i, t in self._queued.items() if self._held(i, t)}
            self._queued.clear()
            if not batch:
                continue
            try:
                await self._recover(batch)
                failures = 0
            except MobKitError as exc:
                failures += 1
                log.warning(
                    "open tickets of %d identities not read (%s); trying again", len(batch), exc
                )
                for identity, token in batch.items():
                    self._queued.setdefault(identity, token)
                await asyncio.sleep(min(MAX_BACKOFF, 0.5 * 2 ** min(failures, 4)))

    async def _recover(self, batch: dict[str, int]) -> None:
        found = await self.store.open_tickets_of(batch)
        for identity, token in batch.items():
            slot = self._held(identity, token)
            if slot is None:
                continue  # handed over meanwhile: its next owner looks again
            for record in found.get(identity, ()):
                if record.turn_id in self._running:
                    continue
                # A receipt from before a reset is a caller key's earlier turn: the
                # turn runs afresh, as its replay would.
                if await self.o.replay(slot, record.key) is not None:
                    self.store.finished(record)
                else:
                    self._start(record, token)
            await self.store.close_finished(identity, token)
