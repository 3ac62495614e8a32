"""Lease upkeep and the one teardown: renewing every held grant, standing down what
was lost, retiring, and shutting the replica down."""

from __future__ import annotations

import contextlib
import logging
import time

from mobkit.core.errors import BackendFull, BackendUnavailable, MobKitError
from mobkit.core.types import LeaseGrant, Lost
from mobkit.orchestrator import lifecycle
from mobkit.orchestrator.replica import RETIRED, Replica
from mobkit.orchestrator.slot import IdentitySlot, StoodDown

log = logging.getLogger("mobkit.orchestrator")


class Upkeep:
    def __init__(self, r: Replica) -> None:
        self.r = r

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
                slot.lease_unproven()
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
                slot.granted(result.grant, now)
        return lost

    async def lose(self, slot: IdentitySlot, why: str) -> None:
        # Close the gate at once, before waiting for an in-flight turn to finish.
        if slot.gate is not None:
            slot.gate.close()
        async with slot.lock:
            await self.lose_locked(slot, why)

    async def lose_locked(self, slot: IdentitySlot, why: str, *, release: bool = False) -> None:
        token = slot.grant.fencing_token if slot.grant else None
        # With ``release``, still the owner in etcd: hand the identity back so anyone
        # can resume it. Without, the key is someone else's (or gone): keep off it.
        await self.teardown(slot.lose(), release=release)
        log.warning("%s: %s; torn down", slot.identity, why, extra={"identity": slot.identity})
        self.r.event("lease_lost", slot.identity, {"fencing_token": token, "detail": why})

    async def teardown(self, gone: StoodDown, *, release: bool = True) -> None:
        """The one teardown, after the slot forgot its session (and grant): close the
        runtime session, then hand the lease back (best effort: a release that fails
        leaves this replica's own key, which its next claim takes back)."""
        if gone.session_id:
            with contextlib.suppress(Exception):
                await self.r.p.runtime.close_session(gone.session_id)
        if release and gone.grant is not None:
            with contextlib.suppress(MobKitError):
                await self.r.p.leases.release_leases([gone.grant], self.r.instance)

    async def give_up(self, slot: IdentitySlot) -> None:
        """An activation that failed hands its grant back; the state stays as it is."""
        await self.teardown(slot.stand_down())

    async def retire_slot(self, slot: IdentitySlot, *, forget: bool) -> None:
        """Stop hosting the identity and release its lease. The continuity record is
        kept: adding the identity back resumes where it left off (ResetIdentity
        starts over on purpose). An operator's retire is recorded first, so no other
        replica claims the identity once its lease is released; a roster removal
        clears the record instead, so adding the identity back resumes it."""
        async with slot.lock:
            lifecycle.RETIRE.check(slot.identity, slot.state)
            if not forget:
                await self.r.record_intent(slot, RETIRED)
            elif self.r.fleet is not None:  # every replica does this: best effort
                with contextlib.suppress(MobKitError):
                    await self.r.fleet.set_intent(slot.identity, None, None)
            await self.teardown(slot.become_retiring())
            slot.become_retired()
        if forget:
            self.r.slots.pop(slot.identity, None)
        self.r.event("retired", slot.identity, {})

    async def shutdown(self, *, release: bool = True) -> None:
        """Close every session; release leases so a successor need not wait for the TTL."""
        grants: list[LeaseGrant] = []
        for slot in self.r.slots.values():
            async with slot.lock:
                gone = slot.stand_down()
                if gone.grant is not None:
                    grants.append(gone.grant)
                await self.teardown(gone, release=False)  # released below, in one call
        if release and grants:
            with contextlib.suppress(MobKitError):
                await self.r.p.leases.release_leases(grants, self.r.instance)
        await self.r.events.close()
