"""The one runner of lifecycle effects: it feeds an event to the slot (which asks
``lifecycle.decide``), performs the effects in order, and feeds their outcomes back
(as ``flows.driver`` does for ``flows.run``). An effect that fails stops the rest and
raises; the best-effort ones (closing a session, releasing a lease, the customizer's
hook, clearing a removed identity's intent) never do."""

from __future__ import annotations

import contextlib
import logging
from collections import deque

from mobkit.core.errors import MobKitError
from mobkit.core.types import LeaseGrant
from mobkit.orchestrator import life as L
from mobkit.orchestrator.replica import Replica
from mobkit.orchestrator.sessions import Sessions
from mobkit.orchestrator.slot import IdentitySlot

log = logging.getLogger("mobkit.orchestrator")


class Runner:
    def __init__(self, r: Replica, sessions: Sessions) -> None:
        self.r = r
        self.sessions = sessions

    async def run(
        self, slot: IdentitySlot, event: L.Event, *, releases: list[LeaseGrant] | None = None
    ) -> None:
        """Carry ``event`` through to its last effect. With ``releases``, leases to hand
        back are collected there (for one release call) instead of released one by one."""
        events = deque([event])
        while events:
            for effect in slot.apply(events.popleft()):
                follow = await self._perform(slot, effect, releases)
                if follow is not None:
                    events.append(follow)

    async def release(self, grants: list[LeaseGrant]) -> None:
        """Best effort: a release that fails leaves this replica's own key, which its
        next claim takes back."""
        if grants:
            with contextlib.suppress(MobKitError):
                await self.r.p.leases.release_leases(grants, self.r.instance)

    async def _perform(
        self, slot: IdentitySlot, effect: L.Effect, releases: list[LeaseGrant] | None
    ) -> L.Event | None:
        p, identity = self.r.p, slot.identity
        match effect:
            case L.Emit(kind, data):
                self.r.event(kind, identity, dict(data))
            case L.CloseSession(session_id):
                with contextlib.suppress(Exception):
                    await p.runtime.close_session(session_id)
            case L.ReleaseLease(grant):
                if releases is not None:
                    releases.append(grant)
                else:
                    await self.release([grant])
            case L.UpsertFence(record, grant):
                await p.continuity.upsert_continuity_record(record, grant.fencing_token)
            case L.OpenSession():
                return await self._open(slot, effect)
            case L.AfterCreate(session_id):
                with contextlib.suppress(MobKitError):
                    await p.customizer.after_create(slot.spec.identity, session_id, {})
            case L.RecordIntent(intent):
                await self.r.record_intent(slot, intent)
            case L.ClearIntent():
                if self.r.fleet is not None:
                    with contextlib.suppress(MobKitError):
                        await self.r.fleet.set_intent(identity, None, None)
            case L.Warn(text):
                log.warning("%s: %s", identity, text, extra={"identity": identity})
            case L.Forget():
                self.r.slots.pop(identity, None)
            case L.Next(event):
                return event
            case L.Fail(error):
                raise error
        return None

    async def _open(self, slot: IdentitySlot, e: L.OpenSession) -> L.Event:
        if e.fresh:
            await self.sessions.create(slot.spec, e.record, e.draft)
            return L.SessionOpened(e.record, e.draft, {}, True, self.r.instance)
        try:
            record, receipts = await self.sessions.restore(slot.spec, e.record, e.draft)
        except L.BrokenIdentity as broken:  # its snapshot is missing or corrupt
            return L.SnapshotUnusable(broken.failure)
        return L.SessionOpened(record, e.draft, receipts, False, self.r.instance)
