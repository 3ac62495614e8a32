"""Proto <-> domain for ``mobkit.roster.v1``: specs, content, roster context and snapshots."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mobkit.core import jsontext
from mobkit.core.errors import InvalidArgument, RosterInvalid
from mobkit.core.identity import AgentIdentity, parse_display_name, parse_identity
from mobkit.core.types import (
    AgentAddressability,
    DurableAgentSpec,
    RosterContext,
    RuntimeMode,
)
from mobkit.flows.definition import FlowDefinition
from mobkit.flows.document import flow_to_entry, parse_flows
from mobkit.gen.roster.v1 import roster_pb2, roster_service_pb2
from mobkit.roster.domain import RosterProblem, RosterSnapshot
from mobkit.wire.json import get_json, put_json

_ADDRESSABILITY = {
    AgentAddressability.ADDRESSABLE: roster_pb2.AGENT_ADDRESSABILITY_ADDRESSABLE,
    AgentAddressability.INTERNAL_ONLY: roster_pb2.AGENT_ADDRESSABILITY_INTERNAL_ONLY,
}
_ADDRESSABILITY_BACK: dict[int, AgentAddressability] = {
    int(v): k for k, v in _ADDRESSABILITY.items()
}
_RUNTIME_MODE = {
    RuntimeMode.AUTONOMOUS_HOST: roster_pb2.RUNTIME_MODE_AUTONOMOUS_HOST,
    RuntimeMode.TURN_DRIVEN: roster_pb2.RUNTIME_MODE_TURN_DRIVEN,
}
_RUNTIME_MODE_BACK: dict[int, RuntimeMode] = {int(v): k for k, v in _RUNTIME_MODE.items()}


# -- enums -------------------------------------------------------------------------------


def addressability_to_proto(value: AgentAddressability) -> Any:
    return _ADDRESSABILITY[value]


def addressability_from_proto(value: int) -> AgentAddressability:
    """Unspecified is the seed's default, addressable."""
    return _ADDRESSABILITY_BACK.get(value, AgentAddressability.ADDRESSABLE)


def runtime_mode_to_proto(value: RuntimeMode) -> Any:
    return _RUNTIME_MODE[value]


def runtime_mode_from_proto(value: int) -> RuntimeMode | None:
    """None for unspecified (the profile's mode applies)."""
    return _RUNTIME_MODE_BACK.get(value)


# -- content -------------------------------------------------------------------------------


def content_to_proto(text: str) -> roster_pb2.ContentInput:
    return roster_pb2.ContentInput(text=text)


def content_from_proto(msg: roster_pb2.ContentInput, field: str = "content") -> str:
    """Domain content is text: text blocks are joined by newlines; images are refused."""
    kind = msg.WhichOneof("content")
    if kind == "text":
        return str(msg.text)
    if kind is None:
        return ""
    parts: list[str] = []
    for i, block in enumerate(msg.blocks.blocks):
        if block.WhichOneof("block") != "text":
            raise InvalidArgument(f"{field}.blocks[{i}]", "only text content is supported")
        parts.append(block.text)
    return "\n".join(parts)


# -- specs and context --------------------------------------------------------------------


def spec_to_proto(spec: DurableAgentSpec) -> roster_pb2.DurableAgentSpec:
    msg = roster_pb2.DurableAgentSpec(
        identity=spec.identity,
        profile=spec.profile,
        addressability=addressability_to_proto(spec.addressability),
        labels=spec.labels,
        additional_instructions=list(spec.additional_instructions),
    )
    if spec.display_name is not None:
        msg.display_name = spec.display_name
    put_json(msg, "context", spec.context, "spec")
    if spec.initial_message is not None:
        msg.initial_message.CopyFrom(content_to_proto(spec.initial_message))
    if spec.runtime_mode_override is not None:
        msg.runtime_mode_override = runtime_mode_to_proto(spec.runtime_mode_override)
    return msg


def spec_from_proto(msg: roster_pb2.DurableAgentSpec, where: str = "spec") -> DurableAgentSpec:
    """``where`` names the spec in errors (``spec``, ``context.roster[3]``)."""
    return DurableAgentSpec(
        identity=parse_identity(msg.identity),
        profile=msg.profile,
        addressability=addressability_from_proto(msg.addressability),
        display_name=parse_display_name(msg.display_name) if msg.HasField("display_name") else None,
        labels=dict(msg.labels),
        context=get_json(msg, "context", where),
        additional_instructions=tuple(msg.additional_instructions),
        initial_message=(
            content_from_proto(msg.initial_message, f"{where}.initial_message")
            if msg.HasField("initial_message")
            else None
        ),
        runtime_mode_override=(
            runtime_mode_from_proto(msg.runtime_mode_override)
            if msg.HasField("runtime_mode_override")
            else None
        ),
    )


def roster_context_to_proto(context: RosterContext | None) -> roster_pb2.RosterContext:
    msg = roster_pb2.RosterContext()
    if context is None:
        return msg
    msg.previous_identities.extend(context.previous_identities)
    put_json(msg, "mob_definition", context.mob_definition, "context")
    return msg


def roster_context_from_proto(msg: roster_pb2.RosterContext) -> RosterContext:
    return RosterContext(
        mob_definition=get_json(msg, "mob_definition", "context"),
        previous_identities=tuple(parse_identity(i) for i in msg.previous_identities),
    )


# -- snapshots -------------------------------------------------------------------------------


def problem_to_proto(problem: RosterProblem) -> roster_pb2.RosterProblem:
    return roster_pb2.RosterProblem(
        reason=problem.reason,
        entry=problem.entry or "",
        field=problem.field or "",
        message=problem.message,
        unreadable=problem.unreadable,
        problems=[problem_to_proto(p) for p in problem.problems],
    )


def problem_from_proto(msg: roster_pb2.RosterProblem) -> RosterProblem:
    return RosterProblem(
        message=msg.message,
        entry=msg.entry or None,
        field=msg.field or None,
        unreadable=msg.unreadable,
        reason=msg.reason or RosterInvalid.reason,
        problems=tuple(problem_from_proto(p) for p in msg.problems),
    )


def _fill(msg: Any, snapshot: RosterSnapshot) -> Any:
    msg.specs.extend(spec_to_proto(s) for s in snapshot.specs)
    msg.roster_revision = snapshot.revision
    msg.profiles.update(snapshot.profiles)
    if snapshot.flows:
        msg.flows_json = jsontext.encode([flow_to_entry(f) for f in snapshot.flows])
    if snapshot.problem is not None:
        msg.problem.CopyFrom(problem_to_proto(snapshot.problem))
    return msg


def get_roster_response(snapshot: RosterSnapshot) -> roster_service_pb2.GetRosterResponse:
    result: roster_service_pb2.GetRosterResponse = _fill(
        roster_service_pb2.GetRosterResponse(), snapshot
    )
    return result


def watch_roster_response(snapshot: RosterSnapshot) -> roster_service_pb2.WatchRosterResponse:
    result: roster_service_pb2.WatchRosterResponse = _fill(
        roster_service_pb2.WatchRosterResponse(), snapshot
    )
    return result


def snapshot_from_proto(
    msg: roster_service_pb2.GetRosterResponse | roster_service_pb2.WatchRosterResponse,
) -> RosterSnapshot:
    """Either response: they carry the same snapshot fields."""
    specs = tuple(spec_from_proto(s, f"specs[{i}]") for i, s in enumerate(msg.specs))
    return RosterSnapshot(
        specs=specs,
        revision=int(msg.roster_revision),
        profiles=dict(msg.profiles),
        problem=problem_from_proto(msg.problem) if msg.HasField("problem") else None,
        flows=flows_from_json(msg.flows_json, [s.identity for s in specs]),
    )


def flows_from_json(text: str, identities: Sequence[AgentIdentity]) -> tuple[FlowDefinition, ...]:
    """The flows a server sent, validated again here (the document's own parser)."""
    if not text:
        return ()
    try:
        value = jsontext.decode(text, jsontext.MAX_DEPTH + 4)
    except jsontext.NotJson as exc:
        raise InvalidArgument("flows_json", f"not JSON: {exc}") from exc
    problems: list[RosterInvalid] = []

    def report(detail: str, *, entry: str | None = None, field: str | None = None) -> None:
        problems.append(RosterInvalid(detail, entry=entry, field=field))

    flows = parse_flows(value, identities, report)
    if problems:
        raise RosterInvalid.several(problems)
    return flows
