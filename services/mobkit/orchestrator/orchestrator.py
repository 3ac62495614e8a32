"""The orchestrator: reconciles the roster into Active identities it owns, keeps
their leases, runs their turns under fencing, and reports what happens.

A façade: the work is done by one part per responsibility over the slots they share
(``replica.Replica``): ``reconcile`` (roster, claiming, fair share), ``activation``,
``lifecycle`` (the pure transitions, run by ``effects.Runner``),
``turns`` (turns, replay, rewind), ``commands`` (operator commands), ``upkeep`` (lease
renewal, teardown, shutdown), ``forwarding`` (find the owner, then forward or wait)
and ``statuses``. Domain only: the servicer turns RPCs into these calls.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from mobkit.core.types import ManagedPeerEdge
from mobkit.orchestrator import checkpoint
from mobkit.orchestrator.activation import Activation
from mobkit.orchestrator.commands import Commands
from mobkit.orchestrator.effects import Runner
from mobkit.orchestrator.event_sink import EventSink
from mobkit.orchestrator.forwarding import Forwarding
from mobkit.orchestrator.ports import Fleet
from mobkit.orchestrator.reconcile import CLAIM_BATCH, Reconciler, ReconcileReport
from mobkit.orchestrator.replica import Providers, Replica
from mobkit.orchestrator.sessions import Sessions
from mobkit.orchestrator.slot import IdentitySlot
from mobkit.orchestrator.statuses import Statuses
from mobkit.orchestrator.turns import Turns
from mobkit.orchestrator.upkeep import Upkeep
from mobkit.roster.domain import RosterProblem

if TYPE_CHECKING:
    from mobkit.modules.supervisor import ModuleSupervisor

__all__ = ["CLAIM_BATCH", "Orchestrator", "Providers", "ReconcileReport"]


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
        r = self._r = Replica(
            providers,
            instance=instance,
            lease_ttl=lease_ttl,
            resume_concurrency=resume_concurrency,
            mob_id=mob_id,
            fleet=fleet,
            receipt_output_limit=receipt_output_limit,
        )
        runner = Runner(r, Sessions(r))  # the one performer of lifecycle effects
        upkeep = Upkeep(r, runner)
        forwarding = Forwarding(r)
        activation = Activation(r, upkeep, runner)
        reconciler = Reconciler(r, upkeep, activation)
        statuses = Statuses(r, forwarding)
        turns = Turns(r, upkeep, activation, forwarding)
        commands = Commands(r, runner, upkeep, activation, reconciler, forwarding, statuses)
        # What callers ask of a replica, each answered by the part that owns it.
        self.reconcile = reconciler.reconcile
        self.claim = reconciler.claim
        self.renew_once = upkeep.renew_once
        self.shutdown = upkeep.shutdown
        self.send = turns.send
        self.dispatch = turns.dispatch
        self.replay = turns.replay
        self.reset = commands.reset
        self.retire = commands.retire
        self.suspend = commands.suspend
        self.resume = commands.resume
        self.get_status = statuses.get_status
        self.status = statuses.status
        self.census = statuses.census
        self.statuses_page = statuses.page
        self.refresh_durability = statuses.refresh_durability

    # -- the shared state, as callers and tests read it ---------------------------------

    @property
    def p(self) -> Providers:
        return self._r.p

    @property
    def fleet(self) -> Fleet | None:
        return self._r.fleet

    @property
    def events(self) -> EventSink:
        return self._r.events

    @property
    def instance(self) -> str:
        return self._r.instance

    @property
    def lease_ttl(self) -> timedelta:
        return self._r.lease_ttl

    @property
    def mob_id(self) -> str:
        return self._r.mob_id

    @property
    def receipt_output_limit(self) -> int:
        return self._r.receipt_output_limit

    @property
    def slots(self) -> dict[str, IdentitySlot]:
        return self._r.slots

    @property
    def roster_revision(self) -> int:
        return self._r.roster_revision

    @property
    def roster_problem(self) -> RosterProblem | None:
        return self._r.roster_problem

    @property
    def edges(self) -> set[ManagedPeerEdge]:
        return self._r.edges

    @property
    def profiles(self) -> dict[str, str]:
        return self._r.profiles

    @property
    def modules(self) -> ModuleSupervisor | None:
        return self._r.modules

    @modules.setter
    def modules(self, supervisor: ModuleSupervisor | None) -> None:
        self._r.modules = supervisor

    def peers_of(self, identity: str) -> tuple[str, ...]:
        return self._r.peers_of(identity)

    def when_active(self, hook: Callable[[IdentitySlot], None]) -> None:
        """Call ``hook`` (it must not block) whenever an identity becomes Active here."""
        self._r.on_active.append(hook)
