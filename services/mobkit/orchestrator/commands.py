"""Operator commands (reset, retire, suspend, resume), run by the identity's owner."""

from __future__ import annotations

from mobkit.core.errors import MobKitError, NotActive
from mobkit.core.identity import AgentIdentity, AgentRuntimeId, SessionId
from mobkit.core.types import ContinuityRecord, IdentityStatus
from mobkit.orchestrator.activation import Activation
from mobkit.orchestrator.effects import Runner
from mobkit.orchestrator.forwarding import Forwarding
from mobkit.orchestrator.life import Regenerated, Resume, Suspend
from mobkit.orchestrator.ports import resolve_states
from mobkit.orchestrator.reconcile import Reconciler
from mobkit.orchestrator.replica import Replica, S
from mobkit.orchestrator.statuses import Statuses
from mobkit.orchestrator.upkeep import Upkeep


class Commands:
    def __init__(
        self,
        r: Replica,
        runner: Runner,
        upkeep: Upkeep,
        activation: Activation,
        reconciler: Reconciler,
        forwarding: Forwarding,
        statuses: Statuses,
    ) -> None:
        self.r = r
        self.runner = runner
        self.upkeep = upkeep
        self.activation = activation
        self.reconciler = reconciler
        self.forwarding = forwarding
        self.statuses = statuses

    async def reset(
        self, identity: str, *, request_id: str = "", forwarded: bool = False
    ) -> IdentityStatus:
        """Start a new generation: fresh session, checkpoint version 0. A retry with
        the request id of the owner's last reset returns without resetting again."""
        if (
            routed := await self.forwarding.command(identity, "reset", forwarded, request_id)
        ) is not None:
            return routed
        slot = self.r.slot(identity)
        async with slot.lock:
            if request_id and slot.last_reset == (request_id, slot.generation):
                return self.statuses.status(identity)
            if slot.state is not S.ACTIVE or slot.grant is None:
                raise NotActive(identity, slot.state.value)
            generation = (slot.generation or 0) + 1
            draft = slot.draft or await self.activation.build_draft(slot.spec)
            info = await self.r.p.runtime.create_session(identity, self.r.kind(slot.spec), draft)
            record = ContinuityRecord(
                AgentIdentity(identity),
                AgentRuntimeId(info.agent_runtime_id),
                SessionId(info.session_id),
                generation,
                0,
            )
            try:
                await self.r.p.continuity.upsert_continuity_record(record, slot.grant.fencing_token)
            except BaseException:
                await self.r.p.runtime.close_session(info.session_id)
                raise
            await self.runner.run(slot, Regenerated(record, request_id))
        return self.statuses.status(identity)

    async def retire(self, identity: str, *, forwarded: bool = False) -> IdentityStatus:
        if (routed := await self.forwarding.command(identity, "retire", forwarded)) is not None:
            return routed
        slot = self.r.slot(identity)
        await self.upkeep.retire_slot(slot, forget=False)
        return self.statuses.status(identity)

    async def suspend(self, identity: str, *, forwarded: bool = False) -> IdentityStatus:
        """Close the session but keep the lease, so no other replica takes it over;
        the recorded intent keeps it suspended if this replica dies."""
        if (routed := await self.forwarding.command(identity, "suspend", forwarded)) is not None:
            return routed
        slot = self.r.slot(identity)
        async with slot.lock:
            await self.runner.run(slot, Suspend())
        return self.statuses.status(identity)

    async def resume(self, identity: str, *, forwarded: bool = False) -> IdentityStatus:
        """Bring a suspended, retired or broken identity back to Active: here, or on
        whichever replica claims it first once the intent is cleared."""
        if (routed := await self.forwarding.command(identity, "resume", forwarded)) is not None:
            return routed
        slot = self.r.slot(identity)
        suspended_here = slot.state is S.SUSPENDED and slot.grant is not None
        await self.runner.run(slot, Resume())
        if suspended_here:
            async with slot.lock:
                try:
                    states = resolve_states(await self.r.p.continuity.resolve_many([identity]))
                    await self.activation.materialise(slot, states[identity])
                except MobKitError:
                    if slot.grant is not None:
                        await self.upkeep.give_up(slot)
                    raise
        else:
            _, failed = await self.reconciler.take([slot])
            if slot.state is not S.ACTIVE:
                if not failed and (elsewhere := await self.forwarding.claimed_elsewhere(identity)):
                    self.r.event("resumed", identity, {"owner": elsewhere.owner})
                    return elsewhere  # above this replica's share: a peer claimed it
                detail = f"{failed[0][1]}: {failed[0][2]}" if failed else "held by another replica"
                raise NotActive(identity, f"{slot.state.value} ({detail})")
        self.r.event("resumed", identity, {})
        return self.statuses.status(identity)
