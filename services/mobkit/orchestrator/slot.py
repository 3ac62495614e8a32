"""What one replica knows about one identity of the roster.

Its lifecycle is one value (``life.Life``) that changes only through ``apply``, which
asks ``lifecycle.decide`` and returns the effects for ``effects.Runner`` to perform.
The slot adds what cannot be a plain value: the teardown gate shared by every handle
to the running session (opened and closed with that session) and the lock that
orders what happens to the identity on this replica.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
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
from mobkit.orchestrator import lifecycle
from mobkit.orchestrator.gate import TeardownGate
from mobkit.orchestrator.life import Effect, Event, Life


@dataclass
class IdentitySlot:
    spec: DurableAgentSpec
    life: Life = field(init=False)
    gate: TeardownGate | None = field(default=None, init=False)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def __post_init__(self) -> None:
        self.life = Life(self.spec.identity)

    def apply(self, event: Event) -> tuple[Effect, ...]:
        """Decide ``event`` and take the new state; a session that goes closes its
        gate at once (stale handles fail closed), a new one opens a fresh gate."""
        life, effects = lifecycle.decide(self.life, event)
        before = self.life.hosted.session_id if self.life.hosted else None
        after = life.hosted.session_id if life.hosted else None
        if after != before:
            if self.gate is not None:
                self.gate.close()
            self.gate = TeardownGate(self.identity) if after is not None else None
        self.life = life
        return effects

    # -- read-only views of the state ---------------------------------------------------

    @property
    def identity(self) -> str:
        return self.spec.identity

    @property
    def state(self) -> IdentityLifecycleState:
        return self.life.state

    @property
    def grant(self) -> LeaseGrant | None:
        return self.life.held.grant if self.life.held else None

    def held_with(self, fencing_token: int) -> bool:
        """Whether this replica still holds the identity under ``fencing_token`` (work
        begun under an earlier grant belongs to whoever holds it now)."""
        grant = self.grant
        return grant is not None and grant.fencing_token == fencing_token

    @property
    def lease_healthy(self) -> bool:
        return self.life.held.healthy if self.life.held else True

    @property
    def session_id(self) -> str | None:
        return self.life.hosted.session_id if self.life.hosted else None

    @property
    def agent_runtime_id(self) -> str | None:
        return self.life.hosted.agent_runtime_id if self.life.hosted else None

    @property
    def draft(self) -> AgentBuildDraft | None:
        return self.life.hosted.draft if self.life.hosted else None

    @property
    def receipts(self) -> Mapping[str, DispatchReceipt]:
        return self.life.hosted.receipts if self.life.hosted else {}

    @property
    def generation(self) -> int | None:
        return self.life.generation

    @property
    def checkpoint_version(self) -> int | None:
        return self.life.checkpoint_version

    @property
    def failure(self) -> ContinuityFailure | None:
        return self.life.failure

    @property
    def activation_failure(self) -> ActivationFailure | None:
        return self.life.activation_failure

    @property
    def retired(self) -> bool:
        return self.life.retired

    @property
    def last_reset(self) -> tuple[str, int] | None:
        return self.life.last_reset

    def ttl_remaining(self) -> float:
        held = self.life.held
        if held is None:
            return 0.0
        left = held.grant.ttl.total_seconds() - (time.monotonic() - held.renewed_at)
        return max(0.0, left)
