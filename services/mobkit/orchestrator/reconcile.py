"""Reconcile and claiming: the roster and its edges into slots, operator intents
from the fleet, and this replica's fair share of the vacant identities."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from mobkit.core.errors import MobKitError, RosterInvalid
from mobkit.core.identity import AgentIdentity
from mobkit.core.types import (
    Acquired,
    DurableAgentSpec,
    ManagedPeerEdge,
    RosterContext,
    TopologyContext,
)
from mobkit.orchestrator.activation import Activation
from mobkit.orchestrator.fleet import fair_share, preference
from mobkit.orchestrator.life import Deactivate, IntentSeen
from mobkit.orchestrator.replica import Replica, S
from mobkit.orchestrator.slot import IdentitySlot
from mobkit.orchestrator.upkeep import Upkeep
from mobkit.roster.domain import RosterProblem, RosterSnapshot

EDGE_EVENTS_MAX = 256
CLAIM_BATCH = 512


@dataclass
class ReconcileReport:
    roster_revision: int = 0
    activated: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    respawned: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # identity, reason, message
    edges_added: list[ManagedPeerEdge] = field(default_factory=list)
    edges_removed: list[ManagedPeerEdge] = field(default_factory=list)
    roster_problem: RosterProblem | None = None  # the source's latest version was rejected


class Reconciler:
    def __init__(self, r: Replica, upkeep: Upkeep, activation: Activation) -> None:
        self.r = r
        self.upkeep = upkeep
        self.activation = activation
        self._lock = asyncio.Lock()

    async def reconcile(self) -> ReconcileReport:
        async with self._lock:
            return await self._reconcile()

    async def _reconcile(self) -> ReconcileReport:
        report = ReconcileReport()
        previous = list(self.r.slots)
        try:
            roster = await self.r.p.roster.get_roster(
                RosterContext(previous_identities=tuple(AgentIdentity(i) for i in previous))
            )
        except RosterInvalid as exc:  # never a valid roster yet: status still says why
            self._note_roster_problem(RosterProblem.from_error(exc))
            raise
        specs, revision = _roster_parts(roster)
        self.r.profiles = dict(roster.profiles)
        report.roster_revision = self.r.roster_revision = revision
        report.roster_problem = self._note_roster_problem(roster.problem)
        desired = {s.identity: s for s in specs}

        for identity in [i for i in previous if i not in desired]:
            await self.upkeep.retire_slot(self.r.slots[identity], forget=True)
            report.retired.append(identity)

        for identity, spec in desired.items():
            slot = self.r.slots.get(identity)
            if slot is None:
                self.r.slots[identity] = IdentitySlot(spec)
            elif slot.spec.profile != spec.profile:
                if slot.state is S.ACTIVE:
                    # Hand the lease back too: a Dormant slot that kept its grant is
                    # never vacant, so it would stay down for good. Vacant, it is
                    # claimed again below (here, or by another replica) as the new
                    # profile.
                    # Not behind the lock: a turn in flight meets the closed gate.
                    await self.upkeep.runner.run(slot, Deactivate())
                    report.respawned.append(identity)
                slot.spec = spec
            elif slot.spec != spec:
                slot.spec = spec  # hot reload: the running session keeps going

        targets = sorted(i for i, s in self.r.slots.items() if not s.retired)
        new_edges = set(
            await self.r.p.topology.compute_edges(targets, TopologyContext(roster=tuple(specs)))
        )
        report.edges_added = sorted(new_edges - self.r.edges)
        report.edges_removed = sorted(self.r.edges - new_edges)
        self.r.edges = new_edges
        self.r.edges_of = {}
        for edge in sorted(new_edges):  # per-identity view, built once per cycle
            self.r.edges_of.setdefault(edge.a, []).append(edge)
            self.r.edges_of.setdefault(edge.b, []).append(edge)
        if len(report.edges_added) + len(report.edges_removed) > EDGE_EVENTS_MAX:
            # A mesh of thousands changes by millions of edges: one summary event.
            self.r.event(
                "topology_changed",
                None,
                {
                    "added": len(report.edges_added),
                    "removed": len(report.edges_removed),
                    "total": len(new_edges),
                },
            )
        else:
            for edge in report.edges_added:
                self.r.event("edge_added", None, {"a": edge.a, "b": edge.b})
            for edge in report.edges_removed:
                self.r.event("edge_removed", None, {"a": edge.a, "b": edge.b})

        await self._sync_intents()
        activated, failed = await self.take(self._vacant())
        report.activated = activated
        report.failed = failed
        return report

    def _note_roster_problem(self, problem: RosterProblem | None) -> RosterProblem | None:
        """Keep the source's rejection for status and reconcile; an event when it is new."""
        if problem is not None and problem != self.r.roster_problem:
            self.r.event(
                "roster_rejected",
                None,
                {
                    "roster_revision": str(self.r.roster_revision),  # above 2**53: not a double
                    "problems": problem.lines(),
                    "replica": self.r.instance,
                },
            )
        self.r.roster_problem = problem
        return problem

    def _vacant(self, *, broken: bool = True) -> list[IdentitySlot]:
        """Desired identities this replica does not host (held elsewhere, or by no one)."""
        states = (S.DORMANT, S.UNINITIALIZED, S.BROKEN) if broken else (S.DORMANT, S.UNINITIALIZED)
        return [
            s
            for s in self.r.slots.values()
            if not s.retired and s.grant is None and s.state in states
        ]

    async def claim(self) -> list[str]:
        """Try to take over vacant identities (e.g. a dead replica's, once its leases
        expire) without a full reconcile, up to this replica's fair share; shed what is
        above it. Broken identities wait for the next reconcile. Returns what was
        activated."""
        async with self._lock:
            await self._shed_excess()
            await self._sync_intents()
            activated, _ = await self.take(self._vacant(broken=False))
        return activated

    async def _sync_intents(self) -> None:
        """Operator intents recorded by any replica (this one before a restart, or a
        dead owner): an identity suspended or retired is shown so here and never
        claimed, until ResumeIdentity clears the intent."""
        if self.r.fleet is None:
            return
        self.r.intents = await self.r.fleet.intents()
        for identity, slot in self.r.slots.items():
            slot.apply(IntentSeen(self.r.intents.get(identity)))

    async def _share(self) -> int | None:
        """How many identities this replica may hold (None: no limit, single replica)."""
        if self.r.fleet is None:
            return None
        members = await self.r.fleet.members()
        if len(members) <= 1:
            return None
        desired = sum(1 for s in self.r.slots.values() if not s.retired)
        return fair_share(desired, len(members))

    async def _shed_excess(self) -> None:
        """A replica joined: hand identities above the fair share back (drain)."""
        share = await self._share()
        held = [s for s in self.r.slots.values() if s.grant is not None and s.state is S.ACTIVE]
        if share is None or len(held) <= share:
            return
        order = preference([s.identity for s in held], self.r.instance)
        for identity in reversed(order[share:]):  # least wanted first
            slot = self.r.slots[identity]
            async with slot.lock:
                if slot.state is S.ACTIVE:
                    await self.upkeep.runner.run(slot, Deactivate(drained_by=self.r.instance))

    async def _within_share(self, slots: list[IdentitySlot]) -> list[IdentitySlot]:
        """The vacant ``slots`` this replica should try to acquire, most wanted first."""
        share = await self._share()
        if share is None or self.r.fleet is None:
            return slots
        holders = await self.r.fleet.held()
        # Rank only what nobody else holds, or every round would retry the same
        # top-ranked identities that other replicas keep.
        taken = {i for i, h in holders.items() if h != self.r.instance}
        taken.update(self.r.intents)  # suspended or retired by an operator
        held = sum(1 for s in self.r.slots.values() if s.grant is not None)
        by_id = {s.identity: s for s in slots if s.identity not in taken}
        ranked = preference(by_id, self.r.instance)
        # A key this replica holds without hosting it (a teardown whose release failed,
        # an acquire whose reply was lost) is one no other replica may claim, and this
        # replica's other grants keep it alive: take it back before any new vacancy
        # while there is room, and release the rest now, so none stays ownerless and
        # the share still holds.
        room = max(0, share - held)
        own = [i for i in ranked if holders.get(i) == self.r.instance]
        new = [i for i in ranked if holders.get(i) != self.r.instance]
        keep, surplus = own[:room], own[room:]
        if surplus:
            await self._release_unhosted(surplus)
        wanted = keep + new[: room - len(keep)]
        return [by_id[i] for i in wanted]

    async def _release_unhosted(self, identities: list[str]) -> None:
        """Release keys this replica holds but does not host. Their tokens come from an
        acquire, which for the same holder answers the current grant (a key that is
        someone else's by now answers AlreadyHeld and is left alone)."""
        leases, instance = self.r.p.leases, self.r.instance
        with contextlib.suppress(MobKitError):
            results = await leases.acquire_leases(identities, instance, self.r.lease_ttl)
            grants = [r.grant for r in results if isinstance(r, Acquired)]
            if grants:
                await leases.release_leases(grants, instance)

    async def take(self, slots: list[IdentitySlot]) -> tuple[list[str], list[tuple[str, str, str]]]:
        """Activate what of ``slots`` is within this replica's share. Bounded rounds keep
        lease renewal on time while a big roster is claimed; the claim loop takes the
        rest on its next rounds."""
        return await self.activation.activate((await self._within_share(slots))[:CLAIM_BATCH])


def _roster_parts(roster: RosterSnapshot) -> tuple[list[DurableAgentSpec], int]:
    return list(roster.specs), roster.revision
