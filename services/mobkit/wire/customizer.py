"""Proto <-> domain for ``mobkit.customizer.v1``: build context, drafts, tools."""

from __future__ import annotations

from mobkit.core.errors import InvalidArgument
from mobkit.core.identity import parse_identity
from mobkit.core.types import AgentBuildContext, AgentBuildDraft, ExternalToolDef, JsonValue
from mobkit.gen.customizer.v1 import customizer_pb2, customizer_service_pb2
from mobkit.wire.json import get_json, put_json
from mobkit.wire.topology import edge_from_proto, edge_to_proto


def build_context_to_proto(context: AgentBuildContext) -> customizer_pb2.AgentBuildContext:
    return customizer_pb2.AgentBuildContext(
        identity=context.identity,
        active_peers=list(context.active_peers),
        managed_edges=[edge_to_proto(e) for e in context.managed_edges],
    )


def build_context_from_proto(msg: customizer_pb2.AgentBuildContext) -> AgentBuildContext:
    return AgentBuildContext(
        identity=parse_identity(msg.identity),
        active_peers=tuple(parse_identity(p) for p in msg.active_peers),
        managed_edges=tuple(edge_from_proto(e) for e in msg.managed_edges),
    )


def tool_to_proto(
    tool: ExternalToolDef, where: str = "external_tools"
) -> customizer_pb2.ExternalToolDef:
    msg = customizer_pb2.ExternalToolDef(name=tool.name, description=tool.description)
    put_json(msg, "input_schema", tool.input_schema, f"{where}.{tool.name}")
    return msg


def tool_from_proto(
    msg: customizer_pb2.ExternalToolDef, where: str = "external_tools"
) -> ExternalToolDef:
    if not msg.name:
        raise InvalidArgument(f"{where}.name", "must not be empty")
    schema = get_json(msg, "input_schema", where)
    return ExternalToolDef(
        name=msg.name, description=msg.description, input_schema={} if schema is None else schema
    )


def draft_to_proto(draft: AgentBuildDraft) -> customizer_pb2.AgentBuildDraft:
    msg = customizer_pb2.AgentBuildDraft(
        additional_instructions=list(draft.additional_instructions),
        labels=draft.labels,
        external_tools=[tool_to_proto(t, "draft.external_tools") for t in draft.external_tools],
    )
    if draft.model is not None:
        msg.model = draft.model
    if draft.system_prompt is not None:
        msg.system_prompt = draft.system_prompt
    put_json(msg, "app_context", draft.app_context, "draft")
    return msg


def draft_from_proto(msg: customizer_pb2.AgentBuildDraft, where: str = "draft") -> AgentBuildDraft:
    return AgentBuildDraft(
        model=msg.model if msg.HasField("model") else None,
        system_prompt=msg.system_prompt if msg.HasField("system_prompt") else None,
        additional_instructions=list(msg.additional_instructions),
        labels=dict(msg.labels),
        app_context=get_json(msg, "app_context", where),
        external_tools=[
            tool_from_proto(t, f"{where}.external_tools[{i}]")
            for i, t in enumerate(msg.external_tools)
        ],
    )


def after_create_request(
    identity: str, session_id: str, context: JsonValue | None
) -> customizer_service_pb2.AfterCreateRequest:
    """AfterCreate's free-form context; None stays unset."""
    msg = customizer_service_pb2.AfterCreateRequest(identity=identity, session_id=session_id)
    put_json(msg, "context", context)
    return msg


def after_create_context(msg: customizer_service_pb2.AfterCreateRequest) -> JsonValue | None:
    return get_json(msg, "context")
