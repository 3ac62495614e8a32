"""What one replica knows about one identity of the roster."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from mobkit.core.types import (
    ActivationFailure,
    AgentBuildDraft,
    ContinuityFailure,
    DispatchReceipt,
    DurableAgentSpec,
    IdentityLifecycleState,
    LeaseGrant,
)
from mobkit.orchestrator.gate import TeardownGate
from mobkit.orchestrator.lifecycle import check_transition


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

    def move(self, target: IdentityLifecycleState) -> None:
        check_transition(self.identity, self.state, target)
        self.state = target

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

    def clear_session(self) -> None:
        """Close the gate so stale handles fail closed, and forget the session."""
        if self.gate is not None:
            self.gate.close()
        self.gate = None
        self.session_id = None
        self.agent_runtime_id = None
        self.receipts = OrderedDict()
