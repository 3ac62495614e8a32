"""Identity statuses: this replica's view, the owner's, and fleet-wide pages."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import timedelta

from mobkit.core.errors import MobKitError
from mobkit.core.identity import AgentIdentity, AgentRuntimeId, SessionId
from mobkit.core.types import ContinuityHealth, IdentityStatus, LeaseInfo, SyncWriteThrough
from mobkit.observability import metrics
from mobkit.orchestrator.forwarding import Forwarding
from mobkit.orchestrator.replica import Replica
from mobkit.orchestrator.status_pages import PeerPage, StatusFilter, fleet_page, local_page


class Statuses:
    def __init__(self, r: Replica, forwarding: Forwarding) -> None:
        self.r = r
        self.forwarding = forwarding

    async def get_status(self, identity: str, *, forwarded: bool = False) -> IdentityStatus:
        """This replica's view if it hosts the identity, else the owner's."""
        holder = await self.forwarding.owner_elsewhere(self.r.slot(identity), forwarded=forwarded)
        if holder is not None:
            try:
                return await self.forwarding.status(holder, identity)
            except (MobKitError, ValueError):
                return replace(self.status(identity), owner=holder)
        return self.status(identity)

    async def page(
        self,
        after: str,
        limit: int,
        flt: StatusFilter,
        *,
        local_only: bool = False,
        own_view: bool = False,
    ) -> tuple[list[IdentityStatus], bool]:
        """Statuses of the identities after ``after``, each as reported by the replica
        hosting it, up to ``limit``; and whether more follow. ``local_only`` (a peer's
        request): only what this replica hosts, no fan-out. ``own_view``: every roster
        identity as this replica sees it, no fan-out (etcd, which lists the other
        replicas, is unreachable: answer now rather than wait for it)."""
        if local_only:
            hosted = sorted(i for i, s in self.r.slots.items() if s.grant is not None)
            return local_page(hosted, self._status_if_present, after, limit, flt)
        ids = sorted(self.r.slots)
        fleet = self.r.fleet
        if fleet is None or own_view:
            return local_page(ids, self._status_if_present, after, limit, flt)
        others = [m for m in await fleet.members() if m != self.r.instance]

        async def ask(cursor: str, size: int) -> list[PeerPage | BaseException]:
            return await asyncio.gather(
                *(fleet.local_statuses(m, cursor, size, timeout=5.0) for m in others),
                return_exceptions=True,
            )

        return await fleet_page(ids, self._status_if_present, ask, len(others), after, limit, flt)

    def _status_if_present(self, identity: str) -> IdentityStatus | None:
        return self.status(identity) if identity in self.r.slots else None

    def status(self, identity: str) -> IdentityStatus:
        slot = self.r.slot(identity)
        lease = None
        if slot.grant is not None:
            lease = LeaseInfo(
                fencing_token=slot.grant.fencing_token,
                ttl_remaining=timedelta(seconds=slot.ttl_remaining()),
                healthy=slot.lease_healthy,
            )
        spec = slot.spec
        health = ContinuityHealth(
            store_reachable=self.r.store_reachable,
            durability_policy=(
                self.r.durability.durability_policy if self.r.durability else SyncWriteThrough()
            ),
            last_checkpoint_version=slot.checkpoint_version,
        )
        return IdentityStatus(
            identity=AgentIdentity(identity),
            state=slot.state,
            agent_runtime_id=AgentRuntimeId(slot.agent_runtime_id)
            if slot.agent_runtime_id
            else None,
            session_id=SessionId(slot.session_id) if slot.session_id else None,
            profile=spec.profile,
            runtime_mode=spec.runtime_mode_override,
            addressability=spec.addressability,
            display_name=spec.display_name,
            labels=dict(spec.labels),
            generation=slot.generation,
            checkpoint_version=slot.checkpoint_version,
            lease=lease,
            continuity_health=health,
            owner=self.r.instance if slot.grant is not None else None,
            failure=slot.failure,
            activation_failure=slot.activation_failure,
            granted_tools=tuple(sorted(t.name for t in slot.draft.external_tools))
            if slot.draft is not None and slot.grant is not None
            else (),
        )

    def census(self) -> metrics.Census:
        """The identities as this replica sees them, by state, and the leases it holds."""
        states = Counter(slot.state.value for slot in self.r.slots.values())
        held = sum(1 for slot in self.r.slots.values() if slot.grant is not None)
        return metrics.Census(states, held)

    async def refresh_durability(self) -> None:
        try:
            self.r.durability = await self.r.p.continuity.health(None)
            self.r.store_reachable = self.r.durability.store_reachable
        except MobKitError:
            self.r.store_reachable = False
