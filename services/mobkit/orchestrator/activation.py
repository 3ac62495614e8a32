"""Activation: acquiring leases for vacant identities, fencing, then building (or
restoring) their sessions; an identity whose continuity cannot be used turns Broken."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from typing import NoReturn

from mobkit.core.errors import InvalidArgument, MobKitError, StoreCorruption
from mobkit.core.identity import AgentIdentity, AgentRuntimeId, SessionId
from mobkit.core.types import (
    Acquired,
    AgentBuildContext,
    AgentBuildDraft,
    Broken,
    ContinuityFailure,
    ContinuityFailureKind,
    ContinuityRecord,
    ContinuityResolveState,
    DispatchReceipt,
    DurableAgentSpec,
    Ready,
    Uninitialized,
)
from mobkit.orchestrator import checkpoint
from mobkit.orchestrator.ports import resolve_states
from mobkit.orchestrator.replica import Replica
from mobkit.orchestrator.slot import IdentitySlot
from mobkit.orchestrator.upkeep import Upkeep

log = logging.getLogger("mobkit.orchestrator")


class Activation:
    def __init__(self, r: Replica, upkeep: Upkeep) -> None:
        self.r = r
        self.upkeep = upkeep

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
                slot.granted(result.grant, now)
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
                except _BrokenIdentity as exc:  # status, log and event already say why
                    failed.append((slot.identity, exc.reason, exc.message))
                    await self.upkeep.give_up(slot)
                except MobKitError as exc:
                    failed.append((slot.identity, exc.reason, exc.message))
                    self._failed(slot, exc.reason, exc.message)
                    await self.upkeep.give_up(slot)
                except Exception as exc:
                    log.exception("activating %s failed", slot.identity)
                    failed.append((slot.identity, "INTERNAL", str(exc)))
                    self._failed(slot, "INTERNAL", str(exc))
                    await self.upkeep.give_up(slot)

        await asyncio.gather(*(one(s) for s in mine))
        return sorted(activated), sorted(failed)

    def _failed(self, slot: IdentitySlot, reason: str, message: str) -> None:
        """Status shows why (``activation_failure``); a new failure also gets one log
        line and an ``activation_failed`` event, a repeated one neither."""
        if slot.activation_failed(reason, message):
            log.warning(
                "%s: cannot be activated: %s: %s",
                slot.identity,
                reason,
                message,
                extra={"identity": slot.identity},
            )
            self.r.event("activation_failed", slot.identity, {"reason": reason, "message": message})

    async def _hand_back(self, acquired: list[IdentitySlot]) -> None:
        """Forget grants just acquired, then release them (best effort: what stays is
        this replica's own key, which its next claim takes back)."""
        grants = [g for s in acquired if (g := s.stand_down().grant) is not None]
        if grants:
            with contextlib.suppress(MobKitError):
                await self.r.p.leases.release_leases(grants, self.r.instance)

    async def _drop_intended(self, acquired: list[IdentitySlot]) -> list[IdentitySlot]:
        assert self.r.fleet is not None
        self.r.intents = await self.r.fleet.intents()
        keep = [s for s in acquired if s.identity not in self.r.intents]
        for slot in acquired:
            if slot.identity in self.r.intents:
                await self.upkeep.give_up(slot)
        return keep

    async def materialise(self, slot: IdentitySlot, state: ContinuityResolveState) -> None:
        grant = slot.grant
        assert grant is not None
        spec = slot.spec
        draft = await self.build_draft(spec)
        if isinstance(state, Broken):
            self._mark_broken(slot, state.failure)
        if isinstance(state, Uninitialized):
            record = ContinuityRecord(
                identity=spec.identity,
                agent_runtime_id=AgentRuntimeId(f"rt-{uuid.uuid4().hex[:16]}"),
                session_id=SessionId(f"sess-{uuid.uuid4().hex}"),
                generation=0,
                checkpoint_version=0,
            )
            # Fence first, as for a Ready one: the record (and our token) lands before
            # the runtime builds the session it names.
            await self.r.p.continuity.upsert_continuity_record(record, grant.fencing_token)
            await self._open_session(spec, record, draft)
            receipts: OrderedDict[str, DispatchReceipt] = OrderedDict()
            with contextlib.suppress(MobKitError):
                await self.r.p.customizer.after_create(spec.identity, record.session_id, {})
        elif isinstance(state, Ready):
            record = state.record
            # Fence first: our token becomes the highest this identity has seen.
            await self.r.p.continuity.upsert_continuity_record(record, grant.fencing_token)
            try:
                record, receipts = await self.restore(spec, record, draft)
            except _BrokenIdentity as broken:  # its snapshot is missing or corrupt
                self._mark_broken(slot, broken.failure)
        else:
            raise InvalidArgument("continuity", f"unexpected resolve state {state!r}")
        slot.become_active(record, draft, receipts)
        for hook in self.r.on_active:
            hook(slot)
        self.r.event(
            "activated",
            spec.identity,
            {
                "session_id": record.session_id,
                "fencing_token": grant.fencing_token,
                "generation": record.generation,
                "checkpoint_version": record.checkpoint_version,
                "owner": self.r.instance,
            },
        )

    def _mark_broken(self, slot: IdentitySlot, failure: ContinuityFailure) -> NoReturn:
        if slot.become_broken(failure):
            self.r.event(
                "broken", slot.identity, {"kind": failure.kind.value, "detail": failure.detail}
            )
        raise _BrokenIdentity(failure)

    async def restore(
        self, spec: DurableAgentSpec, record: ContinuityRecord, draft: AgentBuildDraft
    ) -> tuple[ContinuityRecord, OrderedDict[str, DispatchReceipt]]:
        receipts: OrderedDict[str, DispatchReceipt] = OrderedDict()
        if record.checkpoint_version == 0:
            # Created but never checkpointed: nothing to restore beyond the ids.
            await self._open_session(spec, record, draft)
            return record, receipts
        try:
            loaded = await self.r.p.continuity.load_session_snapshot(record.session_id)
        except StoreCorruption as exc:
            raise _BrokenIdentity(
                ContinuityFailure(
                    spec.identity, ContinuityFailureKind.SNAPSHOT_CORRUPTED, record, exc.message
                )
            ) from exc
        if loaded is None:
            raise _BrokenIdentity(
                ContinuityFailure(
                    spec.identity,
                    ContinuityFailureKind.SNAPSHOT_MISSING,
                    record,
                    f"no snapshot for session {record.session_id}",
                )
            )
        runtime_snapshot, receipts = checkpoint.decode(spec.identity, loaded.snapshot)
        await self.r.p.runtime.resume_session(
            spec.identity,
            self.r.kind(spec),
            record.session_id,
            record.agent_runtime_id,
            runtime_snapshot,
            draft,
        )
        return record, receipts

    async def _open_session(
        self, spec: DurableAgentSpec, record: ContinuityRecord, draft: AgentBuildDraft
    ) -> None:
        """A fresh session under the ids ``record`` names (already fenced)."""
        await self.r.p.runtime.create_session(
            spec.identity,
            self.r.kind(spec),
            draft,
            session_id=record.session_id,
            agent_runtime_id=record.agent_runtime_id,
        )

    async def build_draft(self, spec: DurableAgentSpec) -> AgentBuildDraft:
        edges = tuple(self.r.edges_of.get(spec.identity, ()))
        peers = tuple(sorted(AgentIdentity(p) for e in edges if (p := e.other(spec.identity))))
        context = AgentBuildContext(spec.identity, active_peers=peers, managed_edges=edges)
        return await self.r.p.customizer.customize_build(context, spec, AgentBuildDraft())


class _BrokenIdentity(MobKitError):
    reason = "BROKEN"

    def __init__(self, failure: ContinuityFailure) -> None:
        super().__init__(
            f"{failure.identity} is broken: {failure.kind.value}: {failure.detail}",
            identity=failure.identity,
            kind=failure.kind.value,
        )
        self.failure = failure
