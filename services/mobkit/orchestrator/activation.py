"""Activation: acquiring leases for vacant identities, then (``lifecycle.decide``'s
order) fencing and building or restoring their sessions; an identity whose
continuity cannot be used turns Broken."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from mobkit.core.errors import MobKitError
from mobkit.core.identity import AgentRuntimeId, SessionId
from mobkit.core.types import (
    Acquired,
    ActivationFailure,
    ContinuityRecord,
    ContinuityResolveState,
    LeaseGrant,
)
from mobkit.orchestrator.effects import Runner
from mobkit.orchestrator.life import BrokenIdentity, GiveUp, Granted, Resolved
from mobkit.orchestrator.ports import resolve_states
from mobkit.orchestrator.replica import Replica
from mobkit.orchestrator.slot import IdentitySlot
from mobkit.orchestrator.upkeep import Upkeep

log = logging.getLogger("mobkit.orchestrator")


class Activation:
    def __init__(self, r: Replica, upkeep: Upkeep, runner: Runner) -> None:
        self.r = r
        self.upkeep = upkeep
        self.runner = runner
        # What turns and commands also need of a session.
        self.restore = runner.sessions.restore
        self.build_draft = runner.sessions.build_draft

    async def activate(
        self, slots: list[IdentitySlot]
    ) -> tuple[list[str], list[tuple[str, str, str]]]:
        if not slots:
            return [], []
        ids = [s.identity for s in slots]
        results = await self.r.p.leases.acquire_leases(ids, self.r.instance, self.r.lease_ttl)
        now = time.monotonic()
        mine: list[IdentitySlot] = []
        for slot, result in zip(slots, results, strict=True):
            if isinstance(result, Acquired):
                slot.apply(Granted(result.grant, now))
                mine.append(slot)
        try:
            if mine and self.r.fleet is not None:
                # An owner records a retire before releasing the lease, so an intent
                # written after our first read shows up in a read after our acquire.
                mine = await self._drop_intended(mine)
            if not mine:
                return [], []
            # Resolve after acquiring: from here on no previous owner can write.
            states = resolve_states(
                await self.r.p.continuity.resolve_many([s.identity for s in mine])
            )
        except BaseException:
            # A grant on a slot that never becomes Active would be renewed forever
            # while no session runs it (the claim skips slots with a grant): hand the
            # acquired grants back, so that this or another replica claims them again.
            await self._hand_back(mine)
            raise
        activated: list[str] = []
        failed: list[tuple[str, str, str]] = []

        async def one(slot: IdentitySlot) -> None:
            async with self.r.resume_slots, slot.lock:
                try:
                    await self.materialise(slot, states[slot.identity])
                    activated.append(slot.identity)
                except BrokenIdentity as exc:  # status, log and event already say why
                    failed.append((slot.identity, exc.reason, exc.message))
                except MobKitError as exc:
                    failed.append((slot.identity, exc.reason, exc.message))
                    await self.upkeep.give_up(slot, _failure(exc.reason, exc.message))
                except Exception as exc:
                    log.exception("activating %s failed", slot.identity)
                    failed.append((slot.identity, "INTERNAL", str(exc)))
                    await self.upkeep.give_up(slot, _failure("INTERNAL", str(exc)))

        await asyncio.gather(*(one(s) for s in mine))
        return sorted(activated), sorted(failed)

    async def _hand_back(self, acquired: list[IdentitySlot]) -> None:
        """Forget grants just acquired, then release them in one call."""
        grants: list[LeaseGrant] = []
        for slot in acquired:
            await self.runner.run(slot, GiveUp(), releases=grants)
        await self.runner.release(grants)

    async def _drop_intended(self, acquired: list[IdentitySlot]) -> list[IdentitySlot]:
        assert self.r.fleet is not None
        self.r.intents = await self.r.fleet.intents()
        keep = [s for s in acquired if s.identity not in self.r.intents]
        for slot in acquired:
            if slot.identity in self.r.intents:
                await self.upkeep.give_up(slot)
        return keep

    async def materialise(self, slot: IdentitySlot, state: ContinuityResolveState) -> None:
        """Fence, then build or restore the session (``BrokenIdentity`` when its
        continuity cannot be used; the grant is handed back then)."""
        spec = slot.spec
        draft = await self.build_draft(spec)
        fresh = ContinuityRecord(
            identity=spec.identity,
            agent_runtime_id=AgentRuntimeId(f"rt-{uuid.uuid4().hex[:16]}"),
            session_id=SessionId(f"sess-{uuid.uuid4().hex}"),
            generation=0,
            checkpoint_version=0,
        )
        await self.runner.run(slot, Resolved(state, draft, fresh))
        for hook in self.r.on_active:  # the identity's open turn tickets run here now
            hook(slot)


def _failure(reason: str, message: str) -> ActivationFailure:
    return ActivationFailure(reason, message, int(time.time() * 1000))
