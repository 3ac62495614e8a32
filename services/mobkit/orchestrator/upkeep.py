"""Lease upkeep: renewing every held grant, standing down what was lost, retiring,
and shutting the replica down. The teardown itself is ``lifecycle.decide``'s (one
rule, ``_stand_down``), carried out by ``effects.Runner``."""

from __future__ import annotations

import time

from mobkit.core.errors import BackendFull, BackendUnavailable
from mobkit.core.types import ActivationFailure, LeaseGrant, Lost
from mobkit.orchestrator.effects import Runner
from mobkit.orchestrator.life import GiveUp, LeaseLost, Renewed, Retire, Shutdown, Unproven
from mobkit.orchestrator.replica import Replica
from mobkit.orchestrator.slot import IdentitySlot


class Upkeep:
    def __init__(self, r: Replica, runner: Runner) -> None:
        self.r = r
        self.runner = runner

    async def renew_once(self) -> list[str]:
        """Renew every held grant; tear down what was lost. Returns the lost identities."""
        held = [s for s in self.r.slots.values() if s.grant is not None]
        if not held:
            return []
        try:
            grants = [s.grant for s in held if s.grant]
            results = await self.r.p.leases.renew_leases(grants, self.r.instance)
        except (BackendUnavailable, BackendFull):
            for slot in held:
                if slot.grant is not None:
                    slot.apply(Unproven())
            # Past the TTL we can no longer prove ownership: stand down on our own.
            expired = [s for s in held if s.ttl_remaining() <= 0]
            for slot in expired:
                await self.lose(slot, "lease expired while the lease provider was unreachable")
            return [s.identity for s in expired]
        now = time.monotonic()
        lost: list[str] = []
        for slot, result in zip(held, results, strict=True):
            if isinstance(result, Lost):
                await self.lose(slot, "lease lost")
                lost.append(slot.identity)
            else:
                slot.apply(Renewed(result.grant, now))
        return lost

    async def lose(self, slot: IdentitySlot, why: str) -> None:
        # Close the gate at once, before waiting for an in-flight turn to finish.
        if slot.gate is not None:
            slot.gate.close()
        async with slot.lock:
            await self.lose_locked(slot, why)

    async def lose_locked(self, slot: IdentitySlot, why: str, *, release: bool = False) -> None:
        await self.runner.run(slot, LeaseLost(why, release))

    async def give_up(self, slot: IdentitySlot, failure: ActivationFailure | None = None) -> None:
        """An activation that failed hands its grant back; the state stays as it is."""
        await self.runner.run(slot, GiveUp(failure))

    async def retire_slot(self, slot: IdentitySlot, *, forget: bool) -> None:
        """Stop hosting the identity and release its lease. The continuity record is
        kept: adding the identity back resumes where it left off (ResetIdentity
        starts over on purpose)."""
        async with slot.lock:
            await self.runner.run(slot, Retire(forget))

    async def shutdown(self, *, release: bool = True) -> None:
        """Close every session; release leases so a successor need not wait for the TTL."""
        grants: list[LeaseGrant] = []
        for slot in list(self.r.slots.values()):
            async with slot.lock:
                await self.runner.run(slot, Shutdown(), releases=grants)
        if release:
            await self.runner.release(grants)  # in one call
        await self.r.events.close()
