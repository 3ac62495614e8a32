"""Proto <-> domain for ``mobkit.orchestrator.v1``."""

from __future__ import annotations

from typing import Any

from mobkit.core import page_token
from mobkit.core.errors import InvalidArgument
from mobkit.core.identity import AgentIdentity, FencingToken, SessionId
from mobkit.core.types import (
    ActivationFailure,
    DispatchInput,
    DispatchOrigin,
    DispatchReceipt,
    IdentityLifecycleState,
    IdentityStatus,
    MobStructuralEventEnvelope,
    TokenUsage,
)
from mobkit.gen.orchestrator.v1 import orchestrator_pb2
from mobkit.wire.continuity import (
    failure_from_proto,
    failure_to_proto,
    health_from_proto,
    health_to_proto,
)
from mobkit.wire.json import get_json, put_json
from mobkit.wire.lease import lease_info_from_proto, lease_info_to_proto
from mobkit.wire.roster import (
    addressability_from_proto,
    addressability_to_proto,
    content_from_proto,
    content_to_proto,
    runtime_mode_from_proto,
    runtime_mode_to_proto,
)

_ORIGIN: dict[DispatchOrigin, int] = {
    DispatchOrigin.CONNECTOR: orchestrator_pb2.DISPATCH_ORIGIN_CONNECTOR,
    DispatchOrigin.SCHEDULER: orchestrator_pb2.DISPATCH_ORIGIN_SCHEDULER,
    DispatchOrigin.POLICY: orchestrator_pb2.DISPATCH_ORIGIN_POLICY,
    DispatchOrigin.FLOW: orchestrator_pb2.DISPATCH_ORIGIN_FLOW,
    DispatchOrigin.SYSTEM: orchestrator_pb2.DISPATCH_ORIGIN_SYSTEM,
}
_ORIGIN_BACK = {v: k for k, v in _ORIGIN.items()}


def origin_to_proto(value: DispatchOrigin) -> Any:
    return _ORIGIN[value]


def origin_from_proto(value: int) -> DispatchOrigin:
    """Unspecified (and unknown future values) is the seed's default, SYSTEM."""
    return _ORIGIN_BACK.get(value, DispatchOrigin.SYSTEM)


# -- structural events ---------------------------------------------------------------------


def event_to_proto(env: MobStructuralEventEnvelope) -> orchestrator_pb2.MobStructuralEventEnvelope:
    msg = orchestrator_pb2.MobStructuralEventEnvelope(
        event_id=env.event_id,
        cursor=env.cursor,
        mob_id=env.mob_id,
        timestamp_ms=env.timestamp_ms,
        kind=env.kind,
        mob_labels=env.mob_labels,
        run_labels=env.run_labels,
    )
    for name in ("run_id", "step_id", "agent_identity"):
        value = getattr(env, name)
        if value is not None:
            setattr(msg, name, value)
    put_json(msg, "data", env.data, "event")
    return msg


def event_from_proto(
    msg: orchestrator_pb2.MobStructuralEventEnvelope,
) -> MobStructuralEventEnvelope:
    return MobStructuralEventEnvelope(
        event_id=msg.event_id,
        cursor=msg.cursor,
        mob_id=msg.mob_id,
        timestamp_ms=msg.timestamp_ms,
        kind=msg.kind,
        data=get_json(msg, "data", "event"),
        run_id=msg.run_id if msg.HasField("run_id") else None,
        step_id=msg.step_id if msg.HasField("step_id") else None,
        agent_identity=msg.agent_identity if msg.HasField("agent_identity") else None,
        mob_labels=dict(msg.mob_labels),
        run_labels=dict(msg.run_labels),
    )


# -- dispatch, receipts, status -----------------------------------------------------------

_STATE: dict[IdentityLifecycleState, int] = {
    IdentityLifecycleState.DORMANT: orchestrator_pb2.IDENTITY_LIFECYCLE_STATE_DORMANT,
    IdentityLifecycleState.ACTIVE: orchestrator_pb2.IDENTITY_LIFECYCLE_STATE_ACTIVE,
    IdentityLifecycleState.RETIRING: orchestrator_pb2.IDENTITY_LIFECYCLE_STATE_RETIRING,
    IdentityLifecycleState.SUSPENDED: orchestrator_pb2.IDENTITY_LIFECYCLE_STATE_SUSPENDED,
    IdentityLifecycleState.BROKEN: orchestrator_pb2.IDENTITY_LIFECYCLE_STATE_BROKEN,
    IdentityLifecycleState.UNINITIALIZED: orchestrator_pb2.IDENTITY_LIFECYCLE_STATE_UNINITIALIZED,
}
_STATE_BACK = {v: k for k, v in _STATE.items()}


def state_to_proto(state: IdentityLifecycleState) -> Any:
    return _STATE[state]


def state_from_proto(value: int, field: str = "state") -> IdentityLifecycleState:
    try:
        return _STATE_BACK[value]
    except KeyError:
        raise InvalidArgument(field, f"unknown lifecycle state {value}") from None


def dispatch_input_to_proto(value: DispatchInput) -> orchestrator_pb2.DispatchInput:
    msg = orchestrator_pb2.DispatchInput(
        content=content_to_proto(value.content), origin=origin_to_proto(value.origin)
    )
    if value.correlation_id is not None:
        msg.correlation_id = value.correlation_id
    if value.idempotency_key is not None:
        msg.idempotency_key = value.idempotency_key
    return msg


def dispatch_input_from_proto(msg: orchestrator_pb2.DispatchInput) -> DispatchInput:
    return DispatchInput(
        content=content_from_proto(msg.content, "input.content"),
        origin=origin_from_proto(msg.origin),
        correlation_id=msg.correlation_id if msg.HasField("correlation_id") else None,
        idempotency_key=msg.idempotency_key if msg.HasField("idempotency_key") else None,
    )


def usage_to_proto(usage: TokenUsage) -> orchestrator_pb2.TokenUsage:
    return orchestrator_pb2.TokenUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def usage_from_proto(msg: Any) -> TokenUsage | None:
    """The usage of a message's ``usage`` field; None when it is unset."""
    if not msg.HasField("usage"):
        return None
    return TokenUsage(msg.usage.prompt_tokens, msg.usage.completion_tokens)


def receipt_to_proto(r: DispatchReceipt) -> orchestrator_pb2.DispatchReceipt:
    msg = orchestrator_pb2.DispatchReceipt(
        identity=r.identity,
        session_id=r.session_id,
        fencing_token=r.fencing_token,
        checkpoint_version=r.checkpoint_version,
        output=r.output,
        output_truncated=r.output_truncated,
    )
    put_json(msg, "structured_output", r.structured_output, "receipt")
    if r.correlation_id is not None:
        msg.correlation_id = r.correlation_id
    if r.usage is not None:
        msg.usage.CopyFrom(usage_to_proto(r.usage))
    return msg


def receipt_from_proto(msg: orchestrator_pb2.DispatchReceipt) -> DispatchReceipt:
    return DispatchReceipt(
        identity=AgentIdentity(msg.identity),
        session_id=SessionId(msg.session_id),
        fencing_token=FencingToken(msg.fencing_token),
        checkpoint_version=msg.checkpoint_version,
        output=msg.output,
        structured_output=get_json(msg, "structured_output", "receipt"),
        correlation_id=msg.correlation_id if msg.HasField("correlation_id") else None,
        output_truncated=msg.output_truncated,
        usage=usage_from_proto(msg),
    )


def status_to_proto(s: IdentityStatus) -> orchestrator_pb2.IdentityStatus:
    msg = orchestrator_pb2.IdentityStatus(
        identity=s.identity,
        state=state_to_proto(s.state),
        addressability=addressability_to_proto(s.addressability),
        labels=s.labels,
        granted_tools=s.granted_tools,
    )
    for name in (
        "agent_runtime_id",
        "session_id",
        "profile",
        "display_name",
        "owner",
        "generation",
        "checkpoint_version",
    ):
        value = getattr(s, name)
        if value is not None:
            setattr(msg, name, value)
    if s.runtime_mode is not None:
        msg.runtime_mode = runtime_mode_to_proto(s.runtime_mode)
    if s.lease is not None:
        msg.lease.CopyFrom(lease_info_to_proto(s.lease))
    if s.continuity_health is not None:
        msg.continuity_health.CopyFrom(health_to_proto(s.continuity_health))
    if s.failure is not None:
        msg.continuity_failure.CopyFrom(failure_to_proto(s.failure))
    if s.activation_failure is not None:
        f = s.activation_failure
        msg.activation_failure.CopyFrom(
            orchestrator_pb2.ActivationFailure(
                reason=f.reason, message=f.message, failed_at_ms=f.failed_at_ms
            )
        )
    return msg


def status_from_proto(msg: orchestrator_pb2.IdentityStatus) -> IdentityStatus:
    def opt(name: str) -> Any:
        return getattr(msg, name) if msg.HasField(name) else None  # type: ignore[arg-type]

    return IdentityStatus(
        identity=AgentIdentity(msg.identity),
        state=state_from_proto(msg.state),
        agent_runtime_id=opt("agent_runtime_id"),
        session_id=opt("session_id"),
        profile=opt("profile"),
        runtime_mode=runtime_mode_from_proto(msg.runtime_mode)
        if msg.HasField("runtime_mode")
        else None,
        addressability=addressability_from_proto(msg.addressability),
        display_name=opt("display_name"),
        labels=dict(msg.labels),
        generation=opt("generation"),
        checkpoint_version=opt("checkpoint_version"),
        lease=lease_info_from_proto(msg.lease) if msg.HasField("lease") else None,
        continuity_health=health_from_proto(msg.continuity_health)
        if msg.HasField("continuity_health")
        else None,
        owner=opt("owner"),
        failure=failure_from_proto(msg.continuity_failure)
        if msg.HasField("continuity_failure")
        else None,
        activation_failure=ActivationFailure(
            msg.activation_failure.reason,
            msg.activation_failure.message,
            msg.activation_failure.failed_at_ms,
        )
        if msg.HasField("activation_failure")
        else None,
        granted_tools=tuple(msg.granted_tools),
    )


# ListIdentityStatuses pages by keyset: the token names the last identity of the
# page, so any replica can serve the next page and identities that come or go
# between pages neither repeat nor vanish from the rest of the listing.
_AFTER = "after:"


_NOT_OURS = "not a token this server issued"


def status_page_token(last_identity: str) -> str:
    return page_token.encode(f"{_AFTER}{last_identity}")


# ListEvents, GetTopology and ListModules page by position: the token names an event
# cursor or an offset into a sorted listing.


def position_page_token(position: int) -> str:
    return page_token.encode(str(position))


def position_page_after(token: str) -> int:
    """The position a page token continues from (0 for the first page)."""
    if not token:
        return 0
    text = page_token.decode(token, _NOT_OURS)
    if not text.isascii() or not text.isdigit():
        raise InvalidArgument("page_token", _NOT_OURS)
    return int(text)


def status_page_after(token: str) -> str:
    """The identity a page token continues after ("" for the first page)."""
    if not token:
        return ""
    text = page_token.decode(token, _NOT_OURS)
    if not text.startswith(_AFTER) or len(text) == len(_AFTER):
        raise InvalidArgument("page_token", _NOT_OURS)
    return text[len(_AFTER) :]
