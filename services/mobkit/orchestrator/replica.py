"""What every part of one orchestrator replica shares: its providers, its identity
slots, the roster's edges and the operator intents it has seen.

One instance is one replica (``instance`` is its runtime instance / lease holder
string). The parts (``reconcile``, ``activation``, ``turns``, ``commands``, ``upkeep``,
``forwarding``, ``statuses``) each hold this, never each other's state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mobkit.core.errors import IdentityNotFound, NotActive
from mobkit.core.identity import parse_identity
from mobkit.core.types import (
    ContinuityHealth,
    DurableAgentSpec,
    IdentityLifecycleState,
    ManagedPeerEdge,
)
from mobkit.orchestrator.event_sink import EventSink
from mobkit.orchestrator.ports import (
    Continuity,
    Customizer,
    Events,
    Fleet,
    Leases,
    Roster,
    Topology,
)
from mobkit.orchestrator.slot import IdentitySlot
from mobkit.roster.domain import RosterProblem
from mobkit.runtime.domain import AgentRuntime

if TYPE_CHECKING:
    from mobkit.modules.supervisor import ModuleSupervisor


S = IdentityLifecycleState
PEER_CALL_TIMEOUT = 30.0
ROUTE_POLL = 0.1


@dataclass
class Providers:
    leases: Leases
    continuity: Continuity
    roster: Roster
    topology: Topology
    customizer: Customizer
    runtime: AgentRuntime
    events: Events


class Replica:
    def __init__(
        self,
        providers: Providers,
        *,
        instance: str,
        lease_ttl: timedelta,
        resume_concurrency: int,
        mob_id: str,
        fleet: Fleet | None,
        receipt_output_limit: int,
    ) -> None:
        self.p = providers
        self.receipt_output_limit = receipt_output_limit
        self.fleet = fleet
        self.events = EventSink(providers.events)
        self.instance = instance
        self.lease_ttl = lease_ttl
        self.mob_id = mob_id
        self.resume_slots = asyncio.Semaphore(max(1, resume_concurrency))
        self.slots: dict[str, IdentitySlot] = {}
        self.roster_revision = 0
        # Why the roster source's latest version was rejected (the last valid one rules).
        self.roster_problem: RosterProblem | None = None
        self.edges: set[ManagedPeerEdge] = set()
        self.edges_of: dict[str, list[ManagedPeerEdge]] = {}
        self.durability: ContinuityHealth | None = None
        self.store_reachable = True
        self.profiles: dict[str, str] = {}
        self.intents: dict[str, str] = {}  # operator intents seen in the fleet
        # The module supervisor whose tools turns may call (set by the service).
        self.modules: ModuleSupervisor | None = None
        # Told of each identity that became Active here (turn tickets left open).
        self.on_active: list[Callable[[IdentitySlot], None]] = []

    def peers_of(self, identity: str) -> tuple[str, ...]:
        return tuple(p for e in self.edges_of.get(identity, ()) if (p := e.other(identity)))

    def kind(self, spec: DurableAgentSpec) -> str:
        """The runtime's agent kind for a roster profile (the roster's [profiles] map)."""
        return self.profiles.get(spec.profile, spec.profile)

    def slot(self, identity: str) -> IdentitySlot:
        parse_identity(identity)
        slot = self.slots.get(identity)
        if slot is None:
            raise IdentityNotFound(identity)
        return slot

    def event(self, kind: str, identity: str | None, data: dict[str, Any]) -> None:
        self.events.emit(kind, identity, data)

    async def record_intent(self, slot: IdentitySlot, intent: str | None) -> None:
        """Make an operator command outlive this replica. The owner writes under its
        fencing token: a stale owner's command is refused, not recorded."""
        if self.fleet is None:
            return
        token = slot.grant.fencing_token if slot.grant is not None else None
        if not await self.fleet.set_intent(slot.identity, intent, token):
            raise NotActive(slot.identity, "lease_lost")
        if intent is None:
            self.intents.pop(slot.identity, None)
        else:
            self.intents[slot.identity] = intent
