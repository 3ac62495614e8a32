"""What the orchestrator needs from each provider (structural Protocols).

Each provider package defines its own port; these are the slices the
orchestrator calls, so an in-process provider and its gRPC client adapter are
interchangeable here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import Protocol

from mobkit.continuity.domain import LoadedSnapshot, ResolveEntry, StoredReceipt, TurnReceipt
from mobkit.core.identity import FencingToken
from mobkit.core.types import (
    AgentBuildContext,
    AgentBuildDraft,
    Checkpoint,
    ContinuityHealth,
    ContinuityRecord,
    ContinuityResolveState,
    DispatchInput,
    DispatchReceipt,
    DurableAgentSpec,
    IdentityStatus,
    JsonValue,
    LeaseAcquireResult,
    LeaseGrant,
    LeaseRenewResult,
    ManagedPeerEdge,
    RosterContext,
    TopologyContext,
)
from mobkit.events.domain import EventLog
from mobkit.orchestrator.tickets import Ticket
from mobkit.roster.domain import RosterSnapshot
from mobkit.runtime.sdk import ProgressSink, TurnProgress


class Leases(Protocol):
    async def acquire_leases(
        self, identities: Sequence[str], runtime_instance: str, ttl: timedelta
    ) -> list[LeaseAcquireResult]: ...

    async def renew_leases(
        self, grants: Sequence[LeaseGrant], runtime_instance: str | None = None
    ) -> list[LeaseRenewResult]: ...

    async def release_leases(
        self, grants: Sequence[LeaseGrant], runtime_instance: str | None = None
    ) -> None: ...


class Continuity(Protocol):
    async def resolve_many(self, identities: Sequence[str]) -> list[ResolveEntry]: ...

    async def load_session_snapshot(self, session_id: str) -> LoadedSnapshot | None: ...

    async def save_session_snapshot(
        self, checkpoint: Checkpoint, receipt: TurnReceipt | None = None
    ) -> str: ...

    async def load_receipt(self, identity: str, idempotency_key: str) -> StoredReceipt | None: ...

    async def upsert_continuity_record(
        self, record: ContinuityRecord, fencing_token: FencingToken
    ) -> None: ...

    async def health(self, identity: str | None = None) -> ContinuityHealth: ...


class Roster(Protocol):
    async def get_roster(self, context: RosterContext) -> RosterSnapshot: ...

    def watch_roster(self, context: RosterContext) -> AsyncIterator[RosterSnapshot]: ...


class Topology(Protocol):
    async def compute_edges(
        self, target_identities: Sequence[str], context: TopologyContext
    ) -> list[ManagedPeerEdge]: ...


class Customizer(Protocol):
    async def customize_build(
        self, context: AgentBuildContext, spec: DurableAgentSpec, draft: AgentBuildDraft
    ) -> AgentBuildDraft: ...

    async def after_create(
        self, identity: str, session_id: str, context: JsonValue | None
    ) -> None: ...


Events = EventLog
"""The event log port, under the name the orchestrator has always used."""


def resolve_states(entries: Sequence[ResolveEntry]) -> dict[str, ContinuityResolveState]:
    """A resolve_many answer ((identity, state) pairs) by identity."""
    return dict(entries)


class Fleet(Protocol):
    """The other replicas: who owns what, and a way to forward calls to them."""

    async def owner(self, identity: str, *, recent: bool = False) -> str | None:
        """The identity's owner; with ``recent``, one remembered from an earlier lookup
        may do (until its lease is seen to go, or :meth:`forget_owner`)."""
        ...

    def forget_owner(self, identity: str) -> None:
        """A remembered owner turned out stale: the next lookup asks afresh."""
        ...

    async def members(self) -> list[str]: ...

    async def held(self) -> dict[str, str]: ...

    async def watch_vacancies(self, notify: Callable[[], None]) -> None:
        """Until cancelled, call ``notify`` when an identity or a replica may have
        become vacant (leases or registrations released or expired)."""
        ...

    async def send(
        self,
        holder: str,
        identity: str,
        message: DispatchInput,
        *,
        dispatch: bool,
        timeout: float | None,
        progress: ProgressSink | None = None,
    ) -> DispatchReceipt:
        """The turn, run by ``holder``; with ``progress``, its progress as the owner
        reports it (over ForwardStream; a peer without it reports none)."""
        ...

    async def submit_turn(
        self,
        holder: str,
        identity: str,
        message: DispatchInput,
        *,
        dispatch: bool,
        timeout: float | None,
    ) -> Ticket:
        """A turn ticket submitted to the owner (SubmitTurn, forwarded)."""
        ...

    def watch_turn(
        self, holder: str, turn_id: str, *, progress: bool
    ) -> AsyncIterator[TurnProgress | Ticket]:
        """The owner's WatchTurn of a ticket (forwarded): its progress when
        ``progress``, then the ticket as the owner last saw it."""
        ...

    async def status(self, holder: str, identity: str, timeout: float | None) -> IdentityStatus: ...

    async def command(
        self,
        holder: str,
        command: str,
        identity: str,
        *,
        request_id: str = "",
        timeout: float | None,
    ) -> IdentityStatus:
        """Run an operator command (suspend, resume, retire, reset) on the owner."""
        ...

    async def intents(self) -> dict[str, str]:
        """Operator intents that outlive replicas: identity -> suspended | retired."""
        ...

    async def set_intent(
        self, identity: str, intent: str | None, fencing_token: FencingToken | None
    ) -> bool:
        """Record or clear (None) an intent; with a fencing token, only while that
        token still names the identity's lease. Returns whether it was written."""
        ...

    async def local_statuses(
        self, holder: str, after: str, limit: int, timeout: float | None
    ) -> tuple[list[IdentityStatus], bool]:
        """A peer's hosted statuses after ``after`` (at most ``limit``), and whether
        it stopped short."""
        ...
