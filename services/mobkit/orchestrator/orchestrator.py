"""The orchestrator: reconciles the roster into Active identities it owns, keeps
their leases, runs their turns under fencing, and reports what happens.

One instance is one replica (``instance`` is its runtime instance / lease holder
string). Domain only: the servicer turns RPCs into these calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter, OrderedDict
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from mobkit.continuity.domain import TurnReceipt
from mobkit.core.errors import (
    BackendFull,
    BackendUnavailable,
    IdentityNotFound,
    InvalidArgument,
    MobKitError,
    NotActive,
    NotAddressable,
    RosterInvalid,
    StaleFencingToken,
    StoreCorruption,
    TopologyViolation,
)
from mobkit.core.identity import AgentIdentity, AgentRuntimeId, SessionId, parse_identity
from mobkit.core.types import (
    Acquired,
    AgentAddressability,
    AgentBuildContext,
    AgentBuildDraft,
    Broken,
    ContinuityFailure,
    ContinuityFailureKind,
    ContinuityHealth,
    ContinuityRecord,
    DispatchInput,
    DispatchOrigin,
    DispatchReceipt,
    DurableAgentSpec,
    IdentityLifecycleState,
    IdentityStatus,
    LeaseGrant,
    LeaseInfo,
    Lost,
    ManagedPeerEdge,
    Ready,
    RosterContext,
    SyncWriteThrough,
    TopologyContext,
    Uninitialized,
)
from mobkit.observability import metrics
from mobkit.orchestrator import checkpoint, lifecycle
from mobkit.orchestrator.event_sink import EventSink
from mobkit.orchestrator.fleet import fair_share, preference
from mobkit.orchestrator.inputs import check_dispatch_input
from mobkit.orchestrator.ports import (
    Continuity,
    Customizer,
    Events,
    Fleet,
    Leases,
    Roster,
    Topology,
    resolve_states,
)
from mobkit.orchestrator.slot import IdentitySlot, StoodDown
from mobkit.orchestrator.status_pages import StatusFilter, fleet_page, local_page
from mobkit.roster.domain import RosterProblem
from mobkit.runtime.domain import AgentRuntime

if TYPE_CHECKING:
    from mobkit.modules.supervisor import ModuleSupervisor

log = logging.getLogger("mobkit.orchestrator")

S = IdentityLifecycleState
PEER_CALL_TIMEOUT = 30.0
ROUTE_POLL = 0.1
EDGE_EVENTS_MAX = 256
CLAIM_BATCH = 512
# Operator intents kept in the fleet (see orchestrator/fleet.py).
SUSPENDED, RETIRED = "suspended", "retired"


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


@dataclass
class Providers:
    leases: Leases
    continuity: Continuity
    roster: Roster
    topology: Topology
    customizer: Customizer
    runtime: AgentRuntime
    events: Events


class Orchestrator:
    def __init__(
        self,
        providers: Providers,
        *,
        instance: str,
        lease_ttl: timedelta = timedelta(seconds=10),
        resume_concurrency: int = 16,
        mob_id: str = "mobkit",
        fleet: Fleet | None = None,
        receipt_output_limit: int = checkpoint.DEFAULT_OUTPUT_LIMIT_BYTES,
    ) -> None:
        self.p = providers
        self.receipt_output_limit = receipt_output_limit
        self.fleet = fleet
        self.events = EventSink(providers.events)
        self.instance = instance
        self.lease_ttl = lease_ttl
        self.mob_id = mob_id
        self._resume_slots = asyncio.Semaphore(max(1, resume_concurrency))
        self.slots: dict[str, IdentitySlot] = {}
        self.roster_revision = 0
        # Why the roster source's latest version was rejected (the last valid one rules).
        self.roster_problem: RosterProblem | None = None
        self.edges: set[ManagedPeerEdge] = set()
        self._edges_of: dict[str, list[ManagedPeerEdge]] = {}
        self._reconcile_lock = asyncio.Lock()
        self._durability: ContinuityHealth | None = None
        self._store_reachable = True
        self.profiles: dict[str, str] = {}
        self._intents: dict[str, str] = {}  # operator intents seen in the fleet
        # The module supervisor whose tools turns may call (set by the service).
        self.modules: ModuleSupervisor | None = None

    def peers_of(self, identity: str) -> tuple[str, ...]:
        return tuple(p for e in self._edges_of.get(identity, ()) if (p := e.other(identity)))

    def _kind(self, spec: DurableAgentSpec) -> str:
        """The runtime's agent kind for a roster profile (the roster's [profiles] map)."""
        return self.profiles.get(spec.profile, spec.profile)

    # -- reconcile --------------------------------------------------------------------

    async def reconcile(self) -> ReconcileReport:
        async with self._reconcile_lock:
            return await self._reconcile()

    async def _reconcile(self) -> ReconcileReport:
        report = ReconcileReport()
        previous = list(self.slots)
        try:
            roster = await self.p.roster.get_roster(
                RosterContext(previous_identities=tuple(AgentIdentity(i) for i in previous))
            )
        except RosterInvalid as exc:  # never a valid roster yet: status still says why
            self._note_roster_problem(RosterProblem.from_error(exc))
            raise
        specs, revision = _roster_parts(roster)
        self.profiles = dict(getattr(roster, "profiles", {}) or {})
        report.roster_revision = self.roster_revision = revision
        report.roster_problem = self._note_roster_problem(getattr(roster, "problem", None))
        desired = {s.identity: s for s in specs}

        for identity in [i for i in previous if i not in desired]:
            await self._retire(self.slots[identity], forget=True)
            report.retired.append(identity)

        for identity, spec in desired.items():
            slot = self.slots.get(identity)
            if slot is None:
                self.slots[identity] = IdentitySlot(spec)
            elif slot.spec.profile != spec.profile:
                if slot.state is S.ACTIVE:
                    await self._teardown(slot.deactivate(keep_grant=True))
                    report.respawned.append(identity)
                slot.spec = spec
            elif slot.spec != spec:
                slot.spec = spec  # hot reload: the running session keeps going

        targets = sorted(i for i, s in self.slots.items() if not s.retired)
        new_edges = set(
            await self.p.topology.compute_edges(targets, TopologyContext(roster=tuple(specs)))
        )
        report.edges_added = sorted(new_edges - self.edges)
        report.edges_removed = sorted(self.edges - new_edges)
        self.edges = new_edges
        self._edges_of = {}
        for edge in sorted(new_edges):  # per-identity view, built once per cycle
            self._edges_of.setdefault(edge.a, []).append(edge)
            self._edges_of.setdefault(edge.b, []).append(edge)
        if len(report.edges_added) + len(report.edges_removed) > EDGE_EVENTS_MAX:
            # A mesh of thousands changes by millions of edges: one summary event.
            self._event(
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
                self._event("edge_added", None, {"a": edge.a, "b": edge.b})
            for edge in report.edges_removed:
                self._event("edge_removed", None, {"a": edge.a, "b": edge.b})

        await self._sync_intents()
        activated, failed = await self._activate(self._vacant())
        report.activated = activated
        report.failed = failed
        return report

    def _note_roster_problem(self, problem: RosterProblem | None) -> RosterProblem | None:
        """Keep the source's rejection for status and reconcile; an event when it is new."""
        if problem is not None and problem != self.roster_problem:
            self._event(
                "roster_rejected",
                None,
                {
                    "roster_revision": str(self.roster_revision),  # above 2**53: not a double
                    "problems": problem.lines(),
                    "replica": self.instance,
                },
            )
        self.roster_problem = problem
        return problem

    def _vacant(self, *, broken: bool = True) -> list[IdentitySlot]:
        """Desired identities this replica does not host (held elsewhere, or by no one)."""
        states = (S.DORMANT, S.UNINITIALIZED, S.BROKEN) if broken else (S.DORMANT, S.UNINITIALIZED)
        return [
            s
            for s in self.slots.values()
            if not s.retired and s.grant is None and s.state in states
        ]

    async def claim(self) -> list[str]:
        """Try to take over vacant identities (e.g. a dead replica's, once its leases
        expire) without a full reconcile, up to this replica's fair share; shed what is
        above it. Broken identities wait for the next reconcile. Returns what was
        activated."""
        async with self._reconcile_lock:
            await self._shed_excess()
            await self._sync_intents()
            activated, _ = await self._activate(self._vacant(broken=False))
        return activated

    async def _sync_intents(self) -> None:
        """Operator intents recorded by any replica (this one before a restart, or a
        dead owner): an identity suspended or retired is shown so here and never
        claimed, until ResumeIdentity clears the intent."""
        if self.fleet is None:
            return
        self._intents = await self.fleet.intents()
        for identity, slot in self.slots.items():
            if slot.grant is not None:
                continue  # hosted here: this replica's own view is the truth
            slot.observe_intent(self._intents.get(identity), suspended=SUSPENDED, retired=RETIRED)

    async def _record_intent(self, slot: IdentitySlot, intent: str | None) -> None:
        """Make an operator command outlive this replica. The owner writes under its
        fencing token: a stale owner's command is refused, not recorded."""
        if self.fleet is None:
            return
        token = slot.grant.fencing_token if slot.grant is not None else 0
        if not await self.fleet.set_intent(slot.identity, intent, token):
            raise NotActive(slot.identity, "lease_lost")
        if intent is None:
            self._intents.pop(slot.identity, None)
        else:
            self._intents[slot.identity] = intent

    async def _forward(
        self, identity: str, command: str, forwarded: bool, request_id: str = ""
    ) -> IdentityStatus | None:
        """When another replica hosts the identity, the command runs there."""
        slot = self._slot(identity)
        if slot.grant is not None or forwarded or self.fleet is None:
            return None
        holder = await self.fleet.owner(identity)
        if holder is None or holder == self.instance:
            return None
        return await self.fleet.command(
            holder, command, identity, request_id=request_id, timeout=PEER_CALL_TIMEOUT
        )

    async def _share(self) -> int | None:
        """How many identities this replica may hold (None: no limit, single replica)."""
        if self.fleet is None:
            return None
        members = await self.fleet.members()
        if len(members) <= 1:
            return None
        desired = sum(1 for s in self.slots.values() if not s.retired)
        return fair_share(desired, len(members))

    async def _shed_excess(self) -> None:
        """A replica joined: hand identities above the fair share back (drain)."""
        share = await self._share()
        held = [s for s in self.slots.values() if s.grant is not None and s.state is S.ACTIVE]
        if share is None or len(held) <= share:
            return
        order = preference([s.identity for s in held], self.instance)
        for identity in reversed(order[share:]):  # least wanted first
            slot = self.slots[identity]
            async with slot.lock:
                if slot.state is not S.ACTIVE:
                    continue
                await self._teardown(slot.deactivate(keep_grant=False))
            self._event("drained", identity, {"owner": self.instance})

    async def _activate(
        self, slots: list[IdentitySlot]
    ) -> tuple[list[str], list[tuple[str, str, str]]]:
        # Bounded rounds keep lease renewal on time while a big roster is claimed; the
        # claim loop takes the rest on its next rounds.
        slots = (await self._within_share(slots))[:CLAIM_BATCH]
        if not slots:
            return [], []
        ids = [s.identity for s in slots]
        results = await self.p.leases.acquire_leases(ids, self.instance, self.lease_ttl)
        now = time.monotonic()
        mine: list[IdentitySlot] = []
        for slot, result in zip(slots, results, strict=True):
            if isinstance(result, Acquired):
                slot.granted(result.grant, now)
                mine.append(slot)
        try:
            if mine and self.fleet is not None:
                # An owner records a retire before releasing the lease, so an intent
                # written after our first read shows up in a read after our acquire.
                mine = await self._drop_intended(mine)
            if not mine:
                return [], []
            # Resolve after acquiring: from here on no previous owner can write.
            states = resolve_states(
                await self.p.continuity.resolve_many([s.identity for s in mine])
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
            async with self._resume_slots, slot.lock:
                try:
                    await self._materialise(slot, states[slot.identity])
                    activated.append(slot.identity)
                except _BrokenIdentity as exc:  # status, log and event already say why
                    failed.append((slot.identity, exc.reason, exc.message))
                    await self._give_up(slot)
                except MobKitError as exc:
                    failed.append((slot.identity, exc.reason, exc.message))
                    self._activation_failed(slot, exc.reason, exc.message)
                    await self._give_up(slot)
                except Exception as exc:
                    log.exception("activating %s failed", slot.identity)
                    failed.append((slot.identity, "INTERNAL", str(exc)))
                    self._activation_failed(slot, "INTERNAL", str(exc))
                    await self._give_up(slot)

        await asyncio.gather(*(one(s) for s in mine))
        return sorted(activated), sorted(failed)

    def _activation_failed(self, slot: IdentitySlot, reason: str, message: str) -> None:
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
            self._event("activation_failed", slot.identity, {"reason": reason, "message": message})

    async def _within_share(self, slots: list[IdentitySlot]) -> list[IdentitySlot]:
        """The vacant ``slots`` this replica should try to acquire, most wanted first."""
        share = await self._share()
        if share is None or self.fleet is None:
            return slots
        holders = await self.fleet.held()
        # Rank only what nobody else holds, or every round would retry the same
        # top-ranked identities that other replicas keep.
        taken = {i for i, h in holders.items() if h != self.instance}
        taken.update(self._intents)  # suspended or retired by an operator
        held = sum(1 for s in self.slots.values() if s.grant is not None)
        by_id = {s.identity: s for s in slots if s.identity not in taken}
        ranked = preference(by_id, self.instance)
        # A key this replica holds without hosting it (a teardown whose release failed,
        # an acquire whose reply was lost) is one no other replica may claim: take it
        # back before any new vacancy, whatever the share, or it could stay ownerless
        # while this replica's other grants keep its etcd lease alive. Any excess is
        # shed, with a release, by the next claim round.
        own = [i for i in ranked if holders.get(i) == self.instance]
        new = [i for i in ranked if holders.get(i) != self.instance]
        wanted = own + new[: max(0, share - held - len(own))]
        return [by_id[i] for i in wanted]

    async def _hand_back(self, acquired: list[IdentitySlot]) -> None:
        """Forget grants just acquired, then release them (best effort: what stays is
        this replica's own key, which its next claim takes back)."""
        grants = [g for s in acquired if (g := s.stand_down().grant) is not None]
        if grants:
            with contextlib.suppress(MobKitError):
                await self.p.leases.release_leases(grants, self.instance)

    async def _drop_intended(self, acquired: list[IdentitySlot]) -> list[IdentitySlot]:
        assert self.fleet is not None
        self._intents = await self.fleet.intents()
        keep = [s for s in acquired if s.identity not in self._intents]
        for slot in acquired:
            if slot.identity in self._intents:
                await self._give_up(slot)
        return keep

    async def _give_up(self, slot: IdentitySlot) -> None:
        """An activation that failed hands its grant back; the state stays as it is."""
        await self._teardown(slot.stand_down())

    async def _teardown(self, gone: StoodDown, *, release: bool = True) -> None:
        """The one teardown, after the slot forgot its session (and grant): close the
        runtime session, then hand the lease back (best effort: a release that fails
        leaves this replica's own key, which its next claim takes back)."""
        if gone.session_id:
            with contextlib.suppress(Exception):
                await self.p.runtime.close_session(gone.session_id)
        if release and gone.grant is not None:
            with contextlib.suppress(MobKitError):
                await self.p.leases.release_leases([gone.grant], self.instance)

    async def _materialise(self, slot: IdentitySlot, state: Any) -> None:
        grant = slot.grant
        assert grant is not None
        spec = slot.spec
        draft = await self._build_draft(spec)
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
            await self.p.continuity.upsert_continuity_record(record, grant.fencing_token)
            await self._open_session(spec, record, draft)
            receipts: OrderedDict[str, DispatchReceipt] = OrderedDict()
            with contextlib.suppress(MobKitError):
                await self.p.customizer.after_create(spec.identity, record.session_id, {})
        elif isinstance(state, Ready):
            record = state.record
            # Fence first: our token becomes the highest this identity has seen.
            await self.p.continuity.upsert_continuity_record(record, grant.fencing_token)
            try:
                record, receipts = await self._resume(spec, record, draft)
            except _BrokenIdentity as broken:  # its snapshot is missing or corrupt
                self._mark_broken(slot, broken.failure)
        else:
            raise InvalidArgument("continuity", f"unexpected resolve state {state!r}")
        slot.become_active(record, draft, receipts)
        self._event(
            "activated",
            spec.identity,
            {
                "session_id": record.session_id,
                "fencing_token": grant.fencing_token,
                "generation": record.generation,
                "checkpoint_version": record.checkpoint_version,
                "owner": self.instance,
            },
        )

    def _mark_broken(self, slot: IdentitySlot, failure: ContinuityFailure) -> NoReturn:
        if slot.become_broken(failure):
            self._event(
                "broken", slot.identity, {"kind": failure.kind.value, "detail": failure.detail}
            )
        raise _BrokenIdentity(failure)

    async def _resume(
        self, spec: DurableAgentSpec, record: ContinuityRecord, draft: AgentBuildDraft
    ) -> tuple[ContinuityRecord, OrderedDict[str, DispatchReceipt]]:
        receipts: OrderedDict[str, DispatchReceipt] = OrderedDict()
        if record.checkpoint_version == 0:
            # Created but never checkpointed: nothing to restore beyond the ids.
            await self._open_session(spec, record, draft)
            return record, receipts
        try:
            loaded = await self.p.continuity.load_session_snapshot(record.session_id)
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
        await self.p.runtime.resume_session(
            spec.identity,
            self._kind(spec),
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
        await self.p.runtime.create_session(
            spec.identity,
            self._kind(spec),
            draft,
            session_id=record.session_id,
            agent_runtime_id=record.agent_runtime_id,
        )

    async def _build_draft(self, spec: DurableAgentSpec) -> AgentBuildDraft:
        edges = tuple(self._edges_of.get(spec.identity, ()))
        peers = tuple(sorted(AgentIdentity(p) for e in edges if (p := e.other(spec.identity))))
        context = AgentBuildContext(spec.identity, active_peers=peers, managed_edges=edges)
        return await self.p.customizer.customize_build(context, spec, AgentBuildDraft())

    # -- lease upkeep -----------------------------------------------------------------

    async def renew_once(self) -> list[str]:
        """Renew every held grant; tear down what was lost. Returns the lost identities."""
        held = [s for s in self.slots.values() if s.grant is not None]
        if not held:
            return []
        try:
            grants = [s.grant for s in held if s.grant]
            results = await self.p.leases.renew_leases(grants, self.instance)
        except (BackendUnavailable, BackendFull):
            for slot in held:
                slot.lease_healthy = False
            # Past the TTL we can no longer prove ownership: stand down on our own.
            expired = [s for s in held if s.ttl_remaining() <= 0]
            for slot in expired:
                await self._lose(slot, "lease expired while the lease provider was unreachable")
            return [s.identity for s in expired]
        now = time.monotonic()
        lost: list[str] = []
        for slot, result in zip(held, results, strict=True):
            if isinstance(result, Lost):
                await self._lose(slot, "lease lost")
                lost.append(slot.identity)
            else:
                slot.granted(result.grant, now)
        return lost

    async def _lose(self, slot: IdentitySlot, why: str) -> None:
        # Close the gate at once, before waiting for an in-flight turn to finish.
        if slot.gate is not None:
            slot.gate.close()
        async with slot.lock:
            await self._lose_locked(slot, why)

    async def _lose_locked(self, slot: IdentitySlot, why: str, *, release: bool = False) -> None:
        token = slot.grant.fencing_token if slot.grant else None
        # With ``release``, still the owner in etcd: hand the identity back so anyone
        # can resume it. Without, the key is someone else's (or gone): keep off it.
        await self._teardown(slot.lose(), release=release)
        log.warning("%s: %s; torn down", slot.identity, why, extra={"identity": slot.identity})
        self._event("lease_lost", slot.identity, {"fencing_token": token, "detail": why})

    # -- turns ------------------------------------------------------------------------

    def _slot(self, identity: str) -> IdentitySlot:
        parse_identity(identity)
        slot = self.slots.get(identity)
        if slot is None:
            raise IdentityNotFound(identity)
        return slot

    async def send(
        self,
        identity: str,
        message: DispatchInput,
        *,
        forwarded: bool = False,
        timeout: float | None = None,
    ) -> DispatchReceipt:
        slot = self._slot(identity)
        if slot.spec.addressability is AgentAddressability.INTERNAL_ONLY:
            raise NotAddressable(identity)
        check_dispatch_input(message)
        return await self._deliver(
            slot, message, dispatch=False, forwarded=forwarded, timeout=timeout
        )

    async def dispatch(
        self,
        identity: str,
        message: DispatchInput,
        *,
        forwarded: bool = False,
        timeout: float | None = None,
    ) -> DispatchReceipt:
        slot = self._slot(identity)
        check_dispatch_input(message)
        return await self._deliver(
            slot, message, dispatch=True, forwarded=forwarded, timeout=timeout
        )

    async def _deliver(
        self,
        slot: IdentitySlot,
        message: DispatchInput,
        *,
        dispatch: bool,
        forwarded: bool,
        timeout: float | None,
    ) -> DispatchReceipt:
        """Run the turn here if this replica hosts the identity; otherwise forward it to
        the owner. Between owners (a failover, a drain, or an activation in progress
        here) the call waits, bounded by its deadline (default: one lease TTL plus
        2 s), then fails NOT_ACTIVE with ``retry_after_ms``."""
        loop = asyncio.get_running_loop()
        wait = timeout if timeout is not None else self.lease_ttl.total_seconds() + 2
        deadline = loop.time() + wait
        while True:
            if slot.grant is not None:
                async with slot.lock:
                    key = message.idempotency_key
                    if key and slot.state is S.ACTIVE:
                        replay = await self._replay(slot, key)
                        if replay is not None:
                            return replay
                    if slot.state is S.ACTIVE and slot.grant is not None:
                        return await self._turn(slot, message)
                if slot.grant is not None and slot.state is S.SUSPENDED:
                    raise NotActive(slot.identity, slot.state.value)
            # With a grant but not Active, the identity is being activated here (its
            # lease acquired, its session not built yet): wait for it like for a new
            # owner, instead of failing NOT_ACTIVE while it is almost ready.
            if slot.grant is None:
                if forwarded or self.fleet is None:
                    raise NotActive(slot.identity, slot.state.value)
                holder: str | None = None
                try:
                    holder = await self.fleet.owner(slot.identity)
                    if holder is not None and holder != self.instance:
                        return await self.fleet.send(
                            holder,
                            slot.identity,
                            message,
                            dispatch=dispatch,
                            timeout=max(0.1, deadline - loop.time()),
                        )
                except (NotActive, BackendUnavailable):
                    pass  # the owner is gone or going: wait for the next one
                if holder is None and (slot.retired or slot.state in (S.BROKEN, S.SUSPENDED)):
                    raise NotActive(slot.identity, slot.state.value)
            if loop.time() + ROUTE_POLL >= deadline:
                retry_ms = int(self.lease_ttl.total_seconds() * 1000 / 3)
                raise NotActive(slot.identity, "between_owners", retry_after_ms=retry_ms)
            await asyncio.sleep(ROUTE_POLL)

    async def _replay(self, slot: IdentitySlot, key: str) -> DispatchReceipt | None:
        """The receipt of the turn that ran with ``key`` in this session, if the store
        still keeps it. Always asked of the store: it alone knows the retention, and a
        replay answers what it kept (the output cut to the receipt limit)."""
        legacy = slot.receipts.get(key)  # from a format-1 checkpoint, until restart
        if legacy is not None:
            return legacy
        stored = await self.p.continuity.load_receipt(slot.identity, key)
        if stored is None:
            return None
        receipt = checkpoint.decode_receipt(slot.identity, stored.data)
        if receipt.session_id != slot.session_id:
            return None  # from before a reset: the new generation runs it afresh
        return receipt

    async def _turn(self, slot: IdentitySlot, message: DispatchInput) -> DispatchReceipt:
        if slot.state is not S.ACTIVE or slot.gate is None or slot.grant is None:
            raise NotActive(slot.identity, slot.state.value)
        gate, grant = slot.gate, slot.grant
        session_id, identity = slot.session_id, slot.identity
        assert session_id is not None and slot.generation is not None
        version = (slot.checkpoint_version or 0) + 1
        outcome = await self.p.runtime.run_turn(
            session_id,
            message,
            peers=self.peers_of(identity),
            peer_sender=lambda peer, text: self._peer_message(identity, peer, text),
            tool_caller=self.modules.caller(identity, slot.draft) if self.modules else None,
        )
        gate.ensure_open()
        receipt = DispatchReceipt(
            identity=AgentIdentity(identity),
            session_id=SessionId(session_id),
            fencing_token=grant.fencing_token,
            checkpoint_version=version,
            output=outcome.output,
            structured_output=outcome.structured_output,
            correlation_id=message.correlation_id,
        )
        key = message.idempotency_key
        stored = (
            TurnReceipt(key, checkpoint.encode_receipt(receipt, self.receipt_output_limit))
            if key
            else None
        )
        snapshot = checkpoint.encode(await self.p.runtime.export_snapshot(session_id))
        try:
            await self.p.continuity.save_session_snapshot(
                identity,
                session_id,
                slot.generation,
                version,
                grant.fencing_token,
                snapshot,
                stored,
            )
        except StaleFencingToken:
            metrics.CHECKPOINT_SAVES.labels("stale").inc()
            # Someone else owns this identity now: never act on it again here.
            await self._lose_locked(slot, "checkpoint refused: stale fencing token")
            raise NotActive(identity, "lease_lost") from None
        except BaseException as exc:
            metrics.CHECKPOINT_SAVES.labels(
                "full" if isinstance(exc, BackendFull) else "error"
            ).inc()
            # Unknown outcome (store down, reply lost, call cancelled): resync from the store.
            await self._rewind(slot)
            raise
        metrics.CHECKPOINT_SAVES.labels("ok").inc()
        self._store_reachable = True
        slot.checkpoint_version = version
        self._event(
            "turn_completed",
            identity,
            {
                "session_id": session_id,
                "checkpoint_version": version,
                "correlation_id": message.correlation_id,
                "origin": message.origin.value,
            },
        )
        return receipt

    async def _rewind(self, slot: IdentitySlot) -> None:
        """A turn ran but its checkpoint was not confirmed. The write may still have
        landed (a reply lost when an etcd member died), so re-read the record from the
        store and resume from whatever it holds: the session never runs ahead of the
        store, and a retry with the same idempotency key finds its receipt if the
        write did land."""
        session_id = slot.session_id
        if session_id is None or slot.agent_runtime_id is None:
            return
        await self.p.runtime.close_session(session_id)
        try:
            state = resolve_states(await self.p.continuity.resolve_many([slot.identity]))[
                slot.identity
            ]
            if not isinstance(state, Ready) or state.record.session_id != session_id:
                raise InvalidArgument(
                    "continuity", f"unexpected state after a failed save: {state}"
                )
            record, receipts = await self._resume(
                slot.spec, state.record, slot.draft or AgentBuildDraft()
            )
            slot.rewound(record, receipts)
        except Exception:
            log.exception("%s: could not reload the last checkpoint", slot.identity)
            await self._lose_locked(
                slot, "session could not be restored after a failed checkpoint", release=True
            )

    async def _peer_message(self, sender: str, peer: str, text: str) -> str:
        if sender == peer or ManagedPeerEdge.new(sender, peer) not in self.edges:
            raise TopologyViolation(sender, peer)
        message = DispatchInput(text, origin=DispatchOrigin.FLOW, correlation_id=f"peer:{sender}")
        receipt = await asyncio.wait_for(self.dispatch(peer, message), PEER_CALL_TIMEOUT)
        return receipt.output

    # -- operator commands -------------------------------------------------------------

    async def reset(
        self, identity: str, *, request_id: str = "", forwarded: bool = False
    ) -> IdentityStatus:
        """Start a new generation: fresh session, checkpoint version 0. A retry with
        the request id of the owner's last reset returns without resetting again."""
        if (routed := await self._forward(identity, "reset", forwarded, request_id)) is not None:
            return routed
        slot = self._slot(identity)
        async with slot.lock:
            if request_id and slot.last_reset == (request_id, slot.generation):
                return self.status(identity)
            if slot.state is not S.ACTIVE or slot.grant is None:
                raise NotActive(identity, slot.state.value)
            old_session = slot.session_id
            generation = (slot.generation or 0) + 1
            draft = slot.draft or await self._build_draft(slot.spec)
            info = await self.p.runtime.create_session(identity, self._kind(slot.spec), draft)
            record = ContinuityRecord(
                AgentIdentity(identity),
                AgentRuntimeId(info.agent_runtime_id),
                SessionId(info.session_id),
                generation,
                0,
            )
            try:
                await self.p.continuity.upsert_continuity_record(record, slot.grant.fencing_token)
            except BaseException:
                await self.p.runtime.close_session(info.session_id)
                raise
            slot.new_generation(info.session_id, info.agent_runtime_id, generation, request_id)
            if old_session:
                await self.p.runtime.close_session(old_session)
        self._event("reset", identity, {"generation": generation, "session_id": info.session_id})
        return self.status(identity)

    async def retire(self, identity: str, *, forwarded: bool = False) -> IdentityStatus:
        if (routed := await self._forward(identity, "retire", forwarded)) is not None:
            return routed
        slot = self._slot(identity)
        await self._retire(slot, forget=False)
        return self.status(identity)

    async def _retire(self, slot: IdentitySlot, *, forget: bool) -> None:
        """Stop hosting the identity and release its lease. The continuity record is
        kept: adding the identity back resumes where it left off (ResetIdentity
        starts over on purpose). An operator's retire is recorded first, so no other
        replica claims the identity once its lease is released; a roster removal
        clears the record instead, so adding the identity back resumes it."""
        async with slot.lock:
            lifecycle.RETIRE.check(slot.identity, slot.state)
            if not forget:
                await self._record_intent(slot, RETIRED)
            elif self.fleet is not None:  # every replica does this: best effort
                with contextlib.suppress(MobKitError):
                    await self.fleet.set_intent(slot.identity, None, 0)
            await self._teardown(slot.become_retiring())
            slot.become_retired()
        if forget:
            self.slots.pop(slot.identity, None)
        self._event("retired", slot.identity, {})

    async def suspend(self, identity: str, *, forwarded: bool = False) -> IdentityStatus:
        """Close the session but keep the lease, so no other replica takes it over;
        the recorded intent keeps it suspended if this replica dies."""
        if (routed := await self._forward(identity, "suspend", forwarded)) is not None:
            return routed
        slot = self._slot(identity)
        async with slot.lock:
            lifecycle.SUSPEND.check(identity, slot.state)
            await self._record_intent(slot, SUSPENDED)
            await self._teardown(slot.become_suspended())
        self._event("suspended", identity, {})
        return self.status(identity)

    async def resume(self, identity: str, *, forwarded: bool = False) -> IdentityStatus:
        """Bring a suspended, retired or broken identity back to Active: here, or on
        whichever replica claims it first once the intent is cleared."""
        if (routed := await self._forward(identity, "resume", forwarded)) is not None:
            return routed
        slot = self._slot(identity)
        lifecycle.ACTIVATE.check(identity, slot.state)
        await self._record_intent(slot, None)
        slot.retired = False
        if slot.state is S.SUSPENDED and slot.grant is not None:
            states = resolve_states(await self.p.continuity.resolve_many([identity]))
            async with slot.lock:
                slot.unsuspend()
                try:
                    await self._materialise(slot, states[identity])
                except MobKitError:
                    await self._give_up(slot)
                    raise
        else:
            slot.unsuspend()
            _, failed = await self._activate([slot])
            if slot.state is not S.ACTIVE:
                if not failed and (elsewhere := await self._claimed_elsewhere(identity)):
                    self._event("resumed", identity, {"owner": elsewhere.owner})
                    return elsewhere  # above this replica's share: a peer claimed it
                detail = f"{failed[0][1]}: {failed[0][2]}" if failed else "held by another replica"
                raise NotActive(identity, f"{slot.state.value} ({detail})")
        self._event("resumed", identity, {})
        return self.status(identity)

    async def _claimed_elsewhere(self, identity: str) -> IdentityStatus | None:
        """After a resume this replica could not take (fair share), wait a little for
        the peer whose claim loop the cleared intent woke up."""
        if self.fleet is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lease_ttl.total_seconds() + 2
        while loop.time() < deadline:
            holder = await self.fleet.owner(identity)
            if holder is not None and holder != self.instance:
                with contextlib.suppress(MobKitError, ValueError):
                    status = await self.fleet.status(holder, identity, timeout=5.0)
                    if status.state is S.ACTIVE:
                        return status
            await asyncio.sleep(ROUTE_POLL)
        return None

    # -- status -----------------------------------------------------------------------

    async def get_status(self, identity: str, *, forwarded: bool = False) -> IdentityStatus:
        """This replica's view if it hosts the identity, else the owner's."""
        slot = self._slot(identity)
        if slot.grant is None and not forwarded and self.fleet is not None:
            holder = await self.fleet.owner(identity)
            if holder is not None and holder != self.instance:
                try:
                    return await self.fleet.status(holder, identity, timeout=5.0)
                except (MobKitError, ValueError):
                    return replace(self.status(identity), owner=holder)
        return self.status(identity)

    async def statuses_page(
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
            hosted = sorted(i for i, s in self.slots.items() if s.grant is not None)
            return local_page(hosted, self._status_if_present, after, limit, flt)
        ids = sorted(self.slots)
        fleet = self.fleet
        if fleet is None or own_view:
            return local_page(ids, self._status_if_present, after, limit, flt)
        others = [m for m in await fleet.members() if m != self.instance]

        async def ask(cursor: str, size: int) -> list[Any]:
            return await asyncio.gather(
                *(fleet.local_statuses(m, cursor, size, timeout=5.0) for m in others),
                return_exceptions=True,
            )

        return await fleet_page(
            ids, self._status_if_present, ask, len(others), after, limit, flt
        )

    def _status_if_present(self, identity: str) -> IdentityStatus | None:
        return self.status(identity) if identity in self.slots else None

    def status(self, identity: str) -> IdentityStatus:
        slot = self._slot(identity)
        lease = None
        if slot.grant is not None:
            lease = LeaseInfo(
                fencing_token=slot.grant.fencing_token,
                ttl_remaining=timedelta(seconds=slot.ttl_remaining()),
                healthy=slot.lease_healthy,
            )
        spec = slot.spec
        health = ContinuityHealth(
            store_reachable=self._store_reachable,
            durability_policy=(
                self._durability.durability_policy if self._durability else SyncWriteThrough()
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
            owner=self.instance if slot.grant is not None else None,
            failure=slot.failure,
            activation_failure=slot.activation_failure,
        )

    def census(self) -> metrics.Census:
        """The identities as this replica sees them, by state, and the leases it holds."""
        states = Counter(slot.state.value for slot in self.slots.values())
        held = sum(1 for slot in self.slots.values() if slot.grant is not None)
        return metrics.Census(states, held)

    async def refresh_durability(self) -> None:
        try:
            self._durability = await self.p.continuity.health(None)
            self._store_reachable = self._durability.store_reachable
        except MobKitError:
            self._store_reachable = False

    # -- shutdown ---------------------------------------------------------------------

    async def shutdown(self, *, release: bool = True) -> None:
        """Close every session; release leases so a successor need not wait for the TTL."""
        grants: list[LeaseGrant] = []
        for slot in self.slots.values():
            async with slot.lock:
                gone = slot.stand_down()
                if gone.grant is not None:
                    grants.append(gone.grant)
                await self._teardown(gone, release=False)  # released below, in one call
        if release and grants:
            with contextlib.suppress(MobKitError):
                await self.p.leases.release_leases(grants, self.instance)
        await self.events.close()

    def _event(self, kind: str, identity: str | None, data: dict[str, Any]) -> None:
        self.events.emit(kind, identity, data)


class _BrokenIdentity(MobKitError):
    reason = "BROKEN"

    def __init__(self, failure: ContinuityFailure) -> None:
        super().__init__(
            f"{failure.identity} is broken: {failure.kind.value}: {failure.detail}",
            identity=failure.identity,
            kind=failure.kind.value,
        )
        self.failure = failure


def _roster_parts(roster: Any) -> tuple[list[DurableAgentSpec], int]:
    if isinstance(roster, tuple):
        specs, revision = roster
        return list(specs), int(revision)
    return list(roster.specs), int(
        getattr(roster, "revision", getattr(roster, "roster_revision", 0))
    )
