"""Domain types mirroring the seeds (``mobkit_identity_types.rs``, ``mobkit_types.rs``).

Plain dataclasses: the protos mirror these, ``mobkit.core.convert`` maps between
them, and no module here imports gRPC.
"""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from mobkit.core.errors import InvalidArgument, SelfEdge
from mobkit.core.identity import AgentIdentity, AgentRuntimeId, FencingToken, SessionId

JsonValue = Any
"""A JSON-serialisable value (dict, list, str, int, float, bool or None)."""


# -- continuity ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContinuityRecord:
    """The authoritative continuity record of a durable identity."""

    identity: AgentIdentity
    agent_runtime_id: AgentRuntimeId
    session_id: SessionId
    generation: int
    checkpoint_version: int


class ContinuityFailureKind(enum.Enum):
    SNAPSHOT_MISSING = "snapshot_missing"
    SNAPSHOT_CORRUPTED = "snapshot_corrupted"
    GENERATION_MISMATCH = "generation_mismatch"
    STORE_UNAVAILABLE = "store_unavailable"


@dataclass(frozen=True, slots=True)
class ContinuityFailure:
    identity: AgentIdentity
    kind: ContinuityFailureKind
    record: ContinuityRecord | None
    detail: str


@dataclass(frozen=True, slots=True)
class Uninitialized:
    """No continuity exists yet: the identity starts fresh."""


@dataclass(frozen=True, slots=True)
class Ready:
    record: ContinuityRecord


@dataclass(frozen=True, slots=True)
class Broken:
    """Continuity exists but cannot be materialised safely."""

    failure: ContinuityFailure


ContinuityResolveState = Uninitialized | Ready | Broken


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """Opaque serialised session state. JSON wire form: ``{"data": "<base64>"}``."""

    data: bytes

    def to_json(self) -> dict[str, str]:
        return {"data": base64.b64encode(self.data).decode("ascii")}

    @classmethod
    def from_json(cls, value: JsonValue) -> SessionSnapshot:
        if not isinstance(value, dict) or not isinstance(value.get("data"), str):
            raise InvalidArgument("snapshot", 'expected {"data": "<base64>"}')
        try:
            return cls(base64.b64decode(value["data"], validate=True))
        except (binascii.Error, ValueError) as exc:
            raise InvalidArgument("snapshot.data", f"not valid base64: {exc}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """One save of a session's snapshot: the snapshot of ``session_id`` (of the
    identity's record at ``generation``) as its ``checkpoint_version``, written under
    ``fencing_token``. Keyword-only: three of its fields are integers."""

    identity: AgentIdentity
    session_id: SessionId
    generation: int
    checkpoint_version: int
    fencing_token: FencingToken
    snapshot: SessionSnapshot


@dataclass(frozen=True, slots=True)
class SyncWriteThrough:
    """Every acknowledged write is durable (fsynced or quorum-committed) before the reply."""


@dataclass(frozen=True, slots=True)
class AsyncReplicated:
    """Acknowledged locally, replicated afterwards."""


@dataclass(frozen=True, slots=True)
class BufferedExport:
    """Writes are buffered; up to ``max_loss_window_ms`` of them may be lost on a crash."""

    max_loss_window_ms: int


DurabilityPolicy = SyncWriteThrough | AsyncReplicated | BufferedExport


@dataclass(frozen=True, slots=True)
class ContinuityHealth:
    store_reachable: bool
    durability_policy: DurabilityPolicy
    last_checkpoint_version: int | None = None


# -- leases ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """Proof of ownership: ``fencing_token`` is strictly larger for every new holder."""

    identity: AgentIdentity
    fencing_token: FencingToken
    ttl: timedelta


@dataclass(frozen=True, slots=True)
class Acquired:
    grant: LeaseGrant


@dataclass(frozen=True, slots=True)
class AlreadyHeld:
    identity: AgentIdentity
    holder: str


LeaseAcquireResult = Acquired | AlreadyHeld


@dataclass(frozen=True, slots=True)
class Renewed:
    grant: LeaseGrant


@dataclass(frozen=True, slots=True)
class Lost:
    identity: AgentIdentity


LeaseRenewResult = Renewed | Lost


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    fencing_token: FencingToken
    ttl_remaining: timedelta
    healthy: bool


# -- roster, topology, customisation -------------------------------------------------


class AgentAddressability(enum.Enum):
    """Whether an agent accepts ``send`` (addressable) or only ``dispatch`` (internal-only)."""

    ADDRESSABLE = "addressable"
    INTERNAL_ONLY = "internal_only"


class RuntimeMode(enum.Enum):
    AUTONOMOUS_HOST = "autonomous_host"
    TURN_DRIVEN = "turn_driven"


@dataclass(frozen=True, slots=True)
class DurableAgentSpec:
    """One desired identity of the roster."""

    identity: AgentIdentity
    profile: str
    addressability: AgentAddressability = AgentAddressability.ADDRESSABLE
    display_name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    context: JsonValue | None = None
    additional_instructions: tuple[str, ...] = ()
    initial_message: str | None = None
    runtime_mode_override: RuntimeMode | None = None


@dataclass(frozen=True, slots=True)
class RosterContext:
    mob_definition: JsonValue | None = None
    previous_identities: tuple[AgentIdentity, ...] = ()


@dataclass(frozen=True, slots=True)
class TopologyContext:
    roster: tuple[DurableAgentSpec, ...] = ()


@dataclass(frozen=True, slots=True, order=True)
class ManagedPeerEdge:
    """An undirected peer edge in canonical order ``a < b``; self-edges are refused."""

    a: AgentIdentity
    b: AgentIdentity

    def __post_init__(self) -> None:
        if self.a == self.b:
            raise SelfEdge(self.a)
        if not self.a < self.b:
            raise InvalidArgument("edge", f"not canonical: {self.a!r} must sort before {self.b!r}")

    @classmethod
    def new(cls, x: str, y: str) -> ManagedPeerEdge:
        """Build the canonical edge for an unordered pair."""
        if x == y:
            raise SelfEdge(x)
        a, b = (x, y) if x < y else (y, x)
        return cls(AgentIdentity(a), AgentIdentity(b))

    def other(self, identity: str) -> AgentIdentity | None:
        if identity == self.a:
            return self.b
        if identity == self.b:
            return self.a
        return None


@dataclass(frozen=True, slots=True)
class AgentBuildContext:
    """Read-only context handed to the customizer."""

    identity: AgentIdentity
    active_peers: tuple[AgentIdentity, ...] = ()
    managed_edges: tuple[ManagedPeerEdge, ...] = ()


@dataclass(frozen=True, slots=True)
class ExternalToolDef:
    name: str
    description: str
    input_schema: JsonValue = field(default_factory=dict)


@dataclass(slots=True)
class AgentBuildDraft:
    """The mutable draft a customizer changes before a session is built."""

    model: str | None = None
    system_prompt: str | None = None
    additional_instructions: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    app_context: JsonValue | None = None
    external_tools: list[ExternalToolDef] = field(default_factory=list)


# -- dispatch, status, events ---------------------------------------------------------


class DispatchOrigin(enum.Enum):
    CONNECTOR = "connector"
    SCHEDULER = "scheduler"
    POLICY = "policy"
    FLOW = "flow"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class DispatchInput:
    content: str
    origin: DispatchOrigin = DispatchOrigin.SYSTEM
    correlation_id: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens a turn's model calls used, as the model's endpoint counted them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


@dataclass(frozen=True, slots=True)
class DispatchReceipt:
    """What a completed turn proves: who ran it, in which session, under which token."""

    identity: AgentIdentity
    session_id: SessionId
    fencing_token: FencingToken
    checkpoint_version: int
    output: str
    structured_output: JsonValue | None = None
    correlation_id: str | None = None
    output_truncated: bool = False
    """A replay whose stored receipt was cut to the receipt limit."""
    usage: TokenUsage | None = None
    """Tokens the turn's model calls used; None for agents that call no model."""


class IdentityLifecycleState(enum.Enum):
    DORMANT = "dormant"
    ACTIVE = "active"
    RETIRING = "retiring"
    SUSPENDED = "suspended"
    BROKEN = "broken"
    UNINITIALIZED = "uninitialized"


@dataclass(frozen=True, slots=True)
class ActivationFailure:
    """Why the last attempt to activate an identity failed (the error's reason and
    message); ``failed_at_ms`` is when this failure was first seen."""

    reason: str
    message: str
    failed_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class IdentityStatus:
    identity: AgentIdentity
    state: IdentityLifecycleState
    agent_runtime_id: AgentRuntimeId | None = None
    session_id: SessionId | None = None
    profile: str | None = None
    runtime_mode: RuntimeMode | None = None
    addressability: AgentAddressability = AgentAddressability.ADDRESSABLE
    display_name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    generation: int | None = None
    checkpoint_version: int | None = None
    lease: LeaseInfo | None = None
    continuity_health: ContinuityHealth | None = None
    owner: str | None = None
    failure: ContinuityFailure | None = None
    activation_failure: ActivationFailure | None = None
    granted_tools: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MobStructuralEventEnvelope:
    """A structural event; ``cursor`` is monotonic and is the ``after_seq`` of the next read."""

    event_id: str
    cursor: int
    mob_id: str
    timestamp_ms: int
    kind: str
    data: JsonValue
    run_id: str | None = None
    step_id: str | None = None
    agent_identity: str | None = None
    mob_labels: dict[str, str] = field(default_factory=dict)
    run_labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentEvent:
    agent_id: str
    event_type: str
    payload: JsonValue | None = None


@dataclass(frozen=True, slots=True)
class ModuleEvent:
    module: str
    event_type: str
    payload: JsonValue


UnifiedEvent = AgentEvent | ModuleEvent


# -- modules ----------------------------------------------------------------------------


class RestartPolicy(enum.Enum):
    NEVER = "never"
    ON_FAILURE = "on_failure"
    ALWAYS = "always"


@dataclass(frozen=True, slots=True)
class ModuleConfig:
    id: str
    command: str
    args: tuple[str, ...] = ()
    restart_policy: RestartPolicy = RestartPolicy.ON_FAILURE


@dataclass(frozen=True, slots=True)
class DiscoverySpec:
    namespace: str
    modules: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PreSpawnData:
    module_id: str
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class MobKitConfig:
    modules: tuple[ModuleConfig, ...] = ()
    discovery: DiscoverySpec = DiscoverySpec(namespace="default")
    pre_spawn: tuple[PreSpawnData, ...] = ()
