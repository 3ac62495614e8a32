"""What one replica knows about one identity of the roster.

The lifecycle state changes only through this class's methods, one per transition of
``lifecycle``; each also resets every field that depends on the state (as etcd raft's
``become*`` do), and returns what the caller must still close or release outside the
slot (``StoodDown``).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from mobkit.core.types import (
    ActivationFailure,
    AgentBuildDraft,
    ContinuityFailure,
    ContinuityRecord,
    DispatchReceipt,
    DurableAgentSpec,
    IdentityLifecycleState,
    LeaseGrant,
)
from mobkit.orchestrator import lifecycle
from mobkit.orchestrator.gate import TeardownGate

S = IdentityLifecycleState


@dataclass(frozen=True)
class StoodDown:
    """A runtime session to close and a lease grant to release, both now forgotten."""

    session_id: str | None = None
    grant: LeaseGrant | None = None


@dataclass
class IdentitySlot:
    spec: DurableAgentSpec
    state: IdentityLifecycleState = IdentityLifecycleState.DORMANT
    grant: LeaseGrant | None = None
    renewed_at: float = 0.0
    lease_healthy: bool = True
    agent_runtime_id: str | None = None
    session_id: str | None = None
    generation: int | None = None
    checkpoint_version: int | None = None
    draft: AgentBuildDraft | None = None
    gate: TeardownGate | None = None
    failure: ContinuityFailure | None = None
    activation_failure: ActivationFailure | None = None
    retired: bool = False
    last_reset: tuple[str, int] | None = None  # (request id, generation it created)
    receipts: OrderedDict[str, DispatchReceipt] = field(default_factory=OrderedDict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def identity(self) -> str:
        return self.spec.identity

    def _go(self, transition: lifecycle.Transition) -> None:
        transition.check(self.identity, self.state)
        self.state = transition.target

    # -- transitions --------------------------------------------------------------------

    def become_active(
        self,
        record: ContinuityRecord,
        draft: AgentBuildDraft,
        receipts: OrderedDict[str, DispatchReceipt],
    ) -> None:
        """The session of ``record`` runs here now, behind a fresh gate."""
        lifecycle.ACTIVATE.check(self.identity, self.state)
        self.agent_runtime_id = record.agent_runtime_id
        self.session_id = record.session_id
        self.generation = record.generation
        self.checkpoint_version = record.checkpoint_version
        self.draft = draft
        self.receipts = receipts
        self.gate = TeardownGate(self.identity)
        self.failure = self.activation_failure = None
        self._go(lifecycle.ACTIVATE)

    def become_broken(self, failure: ContinuityFailure) -> bool:
        """Record why continuity failed; True when the identity just became Broken."""
        self.failure = failure
        if self.state is S.BROKEN:
            return False
        self._go(lifecycle.BREAK)
        return True

    def become_suspended(self) -> StoodDown:
        """The operator's suspend: the session goes, the lease is kept."""
        lifecycle.SUSPEND.check(self.identity, self.state)
        gone = self.stand_down(keep_grant=True)
        self._go(lifecycle.SUSPEND)
        return gone

    def deactivate(self, *, keep_grant: bool) -> StoodDown:
        """Stop the session here on purpose (drain, profile change)."""
        lifecycle.DEACTIVATE.check(self.identity, self.state)
        gone = self.stand_down(keep_grant=keep_grant)
        self._go(lifecycle.DEACTIVATE)
        return gone

    def become_retiring(self) -> StoodDown:
        lifecycle.RETIRE.check(self.identity, self.state)
        gone = self.stand_down(keep_grant=False)
        self._go(lifecycle.RETIRE)
        return gone

    def become_retired(self) -> None:
        self._go(lifecycle.RETIRED)
        self.retired = True

    def lose(self) -> StoodDown:
        """The lease is gone: tear down whatever ran (always allowed)."""
        gone = self.stand_down(keep_grant=False)
        if self.state is not S.DORMANT:
            self._go(lifecycle.LOSE)
        return gone

    def observe_intent(self, intent: str | None, *, suspended: str, retired: str) -> None:
        """An operator intent recorded in the fleet, for an identity hosted elsewhere."""
        self.retired = intent == retired
        if intent == suspended and self.state in lifecycle.SEEN_SUSPENDED.sources:
            self._go(lifecycle.SEEN_SUSPENDED)
        elif intent != suspended and self.state is S.SUSPENDED:
            self._go(lifecycle.UNSUSPEND)

    def unsuspend(self) -> None:
        """A resume accepted: Suspended rests as Dormant until its session is built."""
        if self.state is S.SUSPENDED:
            self._go(lifecycle.UNSUSPEND)

    # -- fields that follow the session, not the state ----------------------------------

    def unretire(self) -> None:
        """A resume accepted: the identity may be claimed again."""
        self.retired = False

    def granted(self, grant: LeaseGrant, now: float) -> None:
        self.grant, self.renewed_at, self.lease_healthy = grant, now, True

    def lease_unproven(self) -> None:
        """A renewal that could not reach the lease provider: the grant may still hold."""
        self.lease_healthy = False

    def checkpointed(self, version: int) -> None:
        self.checkpoint_version = version

    def stand_down(self, *, keep_grant: bool = False) -> StoodDown:
        """Close the gate so stale handles fail closed, and forget the session (and the
        grant unless ``keep_grant``). The state is left as it is."""
        gone = StoodDown(self.session_id, None if keep_grant else self.grant)
        if self.gate is not None:
            self.gate.close()
        self.gate = None
        self.session_id = None
        self.agent_runtime_id = None
        self.receipts = OrderedDict()
        if not keep_grant:
            self.grant = None
        return gone

    def new_generation(
        self, session_id: str, agent_runtime_id: str, generation: int, request_id: str
    ) -> str | None:
        """A reset's fresh session replaces the running one; returns the old session."""
        old = self.session_id
        if self.gate is not None:
            self.gate.close()
        self.gate = TeardownGate(self.identity)
        self.session_id, self.agent_runtime_id = session_id, agent_runtime_id
        self.generation, self.checkpoint_version = generation, 0
        self.receipts = OrderedDict()
        self.last_reset = (request_id, generation) if request_id else None
        return old

    def rewound(
        self, record: ContinuityRecord, receipts: OrderedDict[str, DispatchReceipt]
    ) -> None:
        self.generation = record.generation
        self.checkpoint_version = record.checkpoint_version
        self.receipts = receipts

    def activation_failed(self, reason: str, message: str) -> bool:
        """Remember why activating failed; True when this failure is new (not the one
        the previous attempt met), so it is logged and reported once, not every round."""
        known = self.activation_failure
        if known is not None and (known.reason, known.message) == (reason, message):
            return False
        self.activation_failure = ActivationFailure(reason, message, int(time.time() * 1000))
        return True

    def ttl_remaining(self) -> float:
        if self.grant is None:
            return 0.0
        left = self.grant.ttl.total_seconds() - (time.monotonic() - self.renewed_at)
        return max(0.0, left)
