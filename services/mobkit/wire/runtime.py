"""Proto <-> domain for ``mobkit.runtime.v1`` (the AgentRuntimeService messages).

Requests become small ``*Call`` records carrying the arguments of the matching
:class:`~mobkit.runtime.domain.AgentRuntime` method.

Four values of the port have no field in today's protos: ``agent_runtime_id`` on
create, ``profile`` on resume, the turn number of a turn and the session's turn count.
They are written and read only when the message declares the field (see
:func:`_declares`), so they start to travel as soon as the protos gain them; until
then the runtime mints its own agent id on create, takes the profile from the
snapshot on resume, and a remote turn reports ``turn=0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from mobkit.core.errors import InvalidArgument
from mobkit.core.identity import parse_identities, parse_identity
from mobkit.core.types import (
    AgentBuildDraft,
    DispatchInput,
    RuntimeMode,
    SessionSnapshot,
)
from mobkit.gen.continuity.v1 import continuity_pb2
from mobkit.gen.runtime.v1 import runtime_service_pb2 as pb
from mobkit.runtime.domain import SessionInfo, TurnOutcome
from mobkit.wire.customizer import draft_from_proto, draft_to_proto
from mobkit.wire.json import get_json, put_json
from mobkit.wire.orchestrator import (
    origin_from_proto,
    origin_to_proto,
    usage_from_proto,
    usage_to_proto,
)
from mobkit.wire.roster import (
    content_from_proto,
    content_to_proto,
    runtime_mode_from_proto,
    runtime_mode_to_proto,
)


def _declares(msg: Message, name: str) -> bool:
    return name in msg.DESCRIPTOR.fields_by_name


def _set_declared(msg: Message, name: str, value: Any) -> None:
    if value is not None and _declares(msg, name):
        setattr(msg, name, value)


def _get_declared(msg: Message, name: str, default: Any = None) -> Any:
    if not _declares(msg, name):
        return default
    field = msg.DESCRIPTOR.fields_by_name[name]
    if field.has_presence and not msg.HasField(name):
        return default
    return getattr(msg, name)


def _required(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(field, "must not be empty")
    return value


# -- shared pieces ------------------------------------------------------------------------


def snapshot_to_proto(snapshot: SessionSnapshot) -> continuity_pb2.SessionSnapshot:
    return continuity_pb2.SessionSnapshot(data=snapshot.data)


def snapshot_from_proto(msg: continuity_pb2.SessionSnapshot) -> SessionSnapshot:
    return SessionSnapshot(bytes(msg.data))


# -- CreateSession --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateSessionCall:
    identity: str
    profile: str
    draft: AgentBuildDraft
    session_id: str | None = None
    agent_runtime_id: str | None = None
    runtime_mode: RuntimeMode | None = None


def create_request_to_proto(call: CreateSessionCall) -> pb.CreateSessionRequest:
    msg = pb.CreateSessionRequest(
        identity=call.identity, profile=call.profile, draft=draft_to_proto(call.draft)
    )
    if call.session_id is not None:
        msg.session_id = call.session_id
    if call.runtime_mode is not None:
        msg.runtime_mode = runtime_mode_to_proto(call.runtime_mode)
    _set_declared(msg, "agent_runtime_id", call.agent_runtime_id)
    return msg


def create_request_from_proto(msg: pb.CreateSessionRequest) -> CreateSessionCall:
    return CreateSessionCall(
        identity=parse_identity(msg.identity),
        profile=_required(msg.profile, "profile"),
        draft=draft_from_proto(msg.draft),
        session_id=_required(msg.session_id, "session_id") if msg.HasField("session_id") else None,
        agent_runtime_id=_get_declared(msg, "agent_runtime_id") or None,
        runtime_mode=(
            runtime_mode_from_proto(msg.runtime_mode) if msg.HasField("runtime_mode") else None
        ),
    )


def create_response_to_proto(info: SessionInfo) -> pb.CreateSessionResponse:
    msg = pb.CreateSessionResponse(
        session_id=info.session_id, agent_runtime_id=info.agent_runtime_id
    )
    _set_declared(msg, "turns", info.turns)
    return msg


def create_response_from_proto(msg: pb.CreateSessionResponse) -> SessionInfo:
    return SessionInfo(msg.session_id, msg.agent_runtime_id, int(_get_declared(msg, "turns", 0)))


# -- ResumeSession --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResumeSessionCall:
    identity: str
    session_id: str
    agent_runtime_id: str
    snapshot: SessionSnapshot
    draft: AgentBuildDraft
    profile: str = ""  # empty: the snapshot's own profile


def resume_request_to_proto(call: ResumeSessionCall) -> pb.ResumeSessionRequest:
    msg = pb.ResumeSessionRequest(
        identity=call.identity,
        session_id=call.session_id,
        snapshot=snapshot_to_proto(call.snapshot),
        draft=draft_to_proto(call.draft),
        agent_runtime_id=call.agent_runtime_id,
    )
    _set_declared(msg, "profile", call.profile or None)
    return msg


def resume_request_from_proto(msg: pb.ResumeSessionRequest) -> ResumeSessionCall:
    if not msg.HasField("snapshot"):
        raise InvalidArgument("snapshot", "is required")
    return ResumeSessionCall(
        identity=parse_identity(msg.identity),
        session_id=_required(msg.session_id, "session_id"),
        agent_runtime_id=_required(msg.agent_runtime_id, "agent_runtime_id"),
        snapshot=snapshot_from_proto(msg.snapshot),
        draft=draft_from_proto(msg.draft),
        profile=_get_declared(msg, "profile", ""),
    )


def resume_response_to_proto(info: SessionInfo) -> pb.ResumeSessionResponse:
    msg = pb.ResumeSessionResponse(
        session_id=info.session_id, agent_runtime_id=info.agent_runtime_id
    )
    _set_declared(msg, "turns", info.turns)
    return msg


def resume_response_from_proto(msg: pb.ResumeSessionResponse) -> SessionInfo:
    return SessionInfo(msg.session_id, msg.agent_runtime_id, int(_get_declared(msg, "turns", 0)))


# -- RunTurn ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunTurnCall:
    """``message.idempotency_key`` does not travel: deduplication happens before."""

    session_id: str
    message: DispatchInput
    peers: tuple[str, ...] = ()


def run_turn_request_to_proto(call: RunTurnCall) -> pb.RunTurnRequest:
    msg = pb.RunTurnRequest(
        session_id=call.session_id,
        content=content_to_proto(call.message.content),
        origin=origin_to_proto(call.message.origin),
        peers=list(call.peers),
    )
    if call.message.correlation_id is not None:
        msg.correlation_id = call.message.correlation_id
    return msg


def run_turn_request_from_proto(msg: pb.RunTurnRequest) -> RunTurnCall:
    return RunTurnCall(
        session_id=_required(msg.session_id, "session_id"),
        message=DispatchInput(
            content=content_from_proto(msg.content),
            origin=origin_from_proto(msg.origin),
            correlation_id=msg.correlation_id if msg.HasField("correlation_id") else None,
        ),
        peers=tuple(parse_identities(msg.peers, field="peers")),
    )


def turn_outcome_to_proto(outcome: TurnOutcome) -> pb.RunTurnResponse:
    msg = pb.RunTurnResponse(output=outcome.output)
    put_json(msg, "structured_output", outcome.structured_output)
    _set_declared(msg, "turn", outcome.turn)
    if outcome.usage is not None:
        msg.usage.CopyFrom(usage_to_proto(outcome.usage))
    return msg


def turn_outcome_from_proto(msg: pb.RunTurnResponse) -> TurnOutcome:
    return TurnOutcome(
        output=msg.output,
        turn=int(_get_declared(msg, "turn", 0)),
        structured_output=get_json(msg, "structured_output"),
        usage=usage_from_proto(msg),
    )
