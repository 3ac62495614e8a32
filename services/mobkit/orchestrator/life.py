"""What one replica knows of one identity's lifecycle, as plain values (sans-I/O):
the state value (``Life``), the events that can happen to it and the effects a
decision asks for. ``lifecycle.decide`` maps one to the others; ``effects.Runner``
performs the effects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mobkit.core.errors import MobKitError
from mobkit.core.types import (
    ActivationFailure,
    AgentBuildDraft,
    ContinuityFailure,
    ContinuityRecord,
    ContinuityResolveState,
    DispatchReceipt,
    IdentityLifecycleState,
    LeaseGrant,
)

S = IdentityLifecycleState
# Operator intents kept in the fleet (see orchestrator/fleet.py).
SUSPENDED, RETIRED = "suspended", "retired"


@dataclass(frozen=True, slots=True)
class Held:
    """The lease this replica holds for the identity."""

    grant: LeaseGrant
    renewed_at: float  # monotonic time of the last acquire or renewal
    healthy: bool = True  # False: the last renewal could not reach the lease provider


@dataclass(frozen=True, slots=True)
class Hosted:
    """The runtime session running here for the identity (it shares one gate)."""

    session_id: str
    agent_runtime_id: str
    draft: AgentBuildDraft
    receipts: Mapping[str, DispatchReceipt] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Life:
    identity: str
    state: S = S.DORMANT
    held: Held | None = None
    hosted: Hosted | None = None
    generation: int | None = None
    checkpoint_version: int | None = None
    failure: ContinuityFailure | None = None
    activation_failure: ActivationFailure | None = None
    retired: bool = False
    last_reset: tuple[str, int] | None = None  # (request id, generation it created)


# -- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Granted:
    """A lease acquired at ``at`` (monotonic)."""

    grant: LeaseGrant
    at: float


@dataclass(frozen=True, slots=True)
class Renewed:
    """A held lease renewed at ``at``; one that was torn down meanwhile stays gone."""

    grant: LeaseGrant
    at: float


@dataclass(frozen=True, slots=True)
class Unproven:
    """A renewal that could not reach the lease provider: the grant may still hold."""


@dataclass(frozen=True, slots=True)
class LeaseLost:
    """The lease is gone (or can no longer be proven). With ``release`` this replica
    is still the owner in etcd and hands the identity back."""

    why: str
    release: bool = False


@dataclass(frozen=True, slots=True)
class Resolved:
    """The continuity store's answer for an identity whose lease was just acquired;
    ``fresh`` names the session to create if it was never initialised."""

    resolved: ContinuityResolveState
    draft: AgentBuildDraft
    fresh: ContinuityRecord


@dataclass(frozen=True, slots=True)
class SessionOpened:
    record: ContinuityRecord
    draft: AgentBuildDraft
    receipts: Mapping[str, DispatchReceipt]
    fresh: bool
    owner: str


@dataclass(frozen=True, slots=True)
class SnapshotUnusable:
    failure: ContinuityFailure


@dataclass(frozen=True, slots=True)
class GiveUp:
    """An activation that failed (``failure`` says why, None: already said) or was
    abandoned hands its grant back; the state stays as it is."""

    failure: ActivationFailure | None = None


@dataclass(frozen=True, slots=True)
class Deactivate:
    """The session stops here on purpose and the lease is handed back: a drain (by
    ``drained_by``, this replica) or a profile change."""

    drained_by: str | None = None


@dataclass(frozen=True, slots=True)
class Shutdown:
    """The replica stops: every session closes and every lease is handed back."""


@dataclass(frozen=True, slots=True)
class Suspend:
    """The operator's SuspendIdentity."""


@dataclass(frozen=True, slots=True)
class SuspendRecorded:
    """The suspend intent is durable: the session goes, the lease stays."""


@dataclass(frozen=True, slots=True)
class Resume:
    """The operator's ResumeIdentity."""


@dataclass(frozen=True, slots=True)
class ResumeRecorded:
    """The intent is cleared: the identity may be claimed (and activated) again."""


@dataclass(frozen=True, slots=True)
class Retire:
    """Stop hosting the identity: the operator's (recorded) or a roster removal
    (``forget``: the slot goes too)."""

    forget: bool


@dataclass(frozen=True, slots=True)
class RetireRecorded:
    forget: bool


@dataclass(frozen=True, slots=True)
class TornDown:
    """The retiring identity's session and lease are gone."""

    forget: bool


@dataclass(frozen=True, slots=True)
class IntentSeen:
    """An operator intent read from the fleet (for an identity hosted elsewhere)."""

    intent: str | None


@dataclass(frozen=True, slots=True)
class Checkpointed:
    version: int


@dataclass(frozen=True, slots=True)
class Rewound:
    """The session was resumed from the store's last checkpoint."""

    record: ContinuityRecord
    receipts: Mapping[str, DispatchReceipt]


@dataclass(frozen=True, slots=True)
class Regenerated:
    """A reset's fresh session (already fenced) replaces the running one."""

    record: ContinuityRecord
    request_id: str


Event = (
    Granted
    | Renewed
    | Unproven
    | LeaseLost
    | Resolved
    | SessionOpened
    | SnapshotUnusable
    | GiveUp
    | Deactivate
    | Shutdown
    | Suspend
    | SuspendRecorded
    | Resume
    | ResumeRecorded
    | Retire
    | RetireRecorded
    | TornDown
    | IntentSeen
    | Checkpointed
    | Rewound
    | Regenerated
)


# -- effects (performed in order; one that fails stops the rest) ----------------------


@dataclass(frozen=True, slots=True)
class RecordIntent:
    """Write the operator intent under this replica's fencing token (refused: the
    lease is lost, NOT_ACTIVE)."""

    intent: str | None


@dataclass(frozen=True, slots=True)
class ClearIntent:
    """Best effort, without a token: every replica does this for a removed identity."""


@dataclass(frozen=True, slots=True)
class UpsertFence:
    """Write the record under the token, before the session it names is used."""

    record: ContinuityRecord
    grant: LeaseGrant


@dataclass(frozen=True, slots=True)
class OpenSession:
    """Create (``fresh``) or restore the session of ``record``; its outcome is the next
    event (``SessionOpened`` or ``SnapshotUnusable``)."""

    record: ContinuityRecord
    draft: AgentBuildDraft
    fresh: bool


@dataclass(frozen=True, slots=True)
class AfterCreate:
    """The customizer's hook for a session created for a new identity (best effort)."""

    session_id: str


@dataclass(frozen=True, slots=True)
class CloseSession:
    session_id: str  # best effort


@dataclass(frozen=True, slots=True)
class ReleaseLease:
    grant: LeaseGrant  # best effort: what stays is this replica's own key


@dataclass(frozen=True, slots=True)
class Emit:
    kind: str
    data: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Warn:
    text: str


@dataclass(frozen=True, slots=True)
class Forget:
    """The identity left the roster: the replica drops its slot."""


@dataclass(frozen=True, slots=True)
class Next:
    """Feed ``event`` to the decision once the effects before it succeeded."""

    event: Event


@dataclass(frozen=True, slots=True)
class Fail:
    """Raise ``error`` once the effects before it are done."""

    error: MobKitError


Effect = (
    RecordIntent
    | ClearIntent
    | UpsertFence
    | OpenSession
    | AfterCreate
    | CloseSession
    | ReleaseLease
    | Emit
    | Warn
    | Forget
    | Next
    | Fail
)


class BrokenIdentity(MobKitError):
    """Its continuity cannot be used (status, log and event already say why)."""

    reason = "BROKEN"

    def __init__(self, failure: ContinuityFailure) -> None:
        super().__init__(
            f"{failure.identity} is broken: {failure.kind.value}: {failure.detail}",
            identity=failure.identity,
            kind=failure.kind.value,
        )
        self.failure = failure
