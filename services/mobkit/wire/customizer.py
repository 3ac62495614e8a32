"""Proto <-> domain for ``mobkit.customizer.v1``: build context, drafts, tools."""

from __future__ import annotations

from typing import Any

from mobkit.core.errors import InvalidArgument
from mobkit.core.identity import parse_identity
from mobkit.core.types import AgentBuildContext, AgentBuildDraft, ExternalToolDef
from mobkit.gen.customizer.v1 import customizer_pb2
from mobkit.wire.json import from_struct, to_struct
from mobkit.wire.topology import edge_from_proto, edge_to_proto


def _object(value: Any, field: str) -> Any:
    if not isinstance(value, dict):
        raise InvalidArgument(field, "must be a JSON object")
    return to_struct(value)


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


def tool_to_proto(tool: ExternalToolDef) -> customizer_pb2.ExternalToolDef:
    return customizer_pb2.ExternalToolDef(
        name=tool.name,
        description=tool.description,
        input_schema=_object(tool.input_schema, f"external_tools.{tool.name}.input_schema"),
    )


def tool_from_proto(msg: customizer_pb2.ExternalToolDef) -> ExternalToolDef:
    if not msg.name:
        raise InvalidArgument("external_tools.name", "must not be empty")
    return ExternalToolDef(
        name=msg.name, description=msg.description, input_schema=from_struct(msg.input_schema)
    )


def draft_to_proto(draft: AgentBuildDraft) -> customizer_pb2.AgentBuildDraft:
    msg = customizer_pb2.AgentBuildDraft(
        additional_instructions=list(draft.additional_instructions),
        labels=draft.labels,
        external_tools=[tool_to_proto(t) for t in draft.external_tools],
    )
    if draft.model is not None:
        msg.model = draft.model
    if draft.system_prompt is not None:
        msg.system_prompt = draft.system_prompt
    if draft.app_context is not None:
        msg.app_context.CopyFrom(_object(draft.app_context, "draft.app_context"))
    return msg


def draft_from_proto(msg: customizer_pb2.AgentBuildDraft) -> AgentBuildDraft:
    return AgentBuildDraft(
        model=msg.model if msg.HasField("model") else None,
        system_prompt=msg.system_prompt if msg.HasField("system_prompt") else None,
        additional_instructions=list(msg.additional_instructions),
        labels=dict(msg.labels),
        app_context=from_struct(msg.app_context) if msg.HasField("app_context") else None,
        external_tools=[tool_from_proto(t) for t in msg.external_tools],
    )


def session_context_to_proto(context: dict[str, Any] | None) -> Any:
    """AfterCreate's free-form context; None stays unset."""
    return None if context is None else _object(context, "context")
