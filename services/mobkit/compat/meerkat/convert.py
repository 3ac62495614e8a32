"""MobKit domain types <-> the models of the ``meerkat-mobkit`` SDK.

Conversion only: the services validate what they receive. Where the SDK can say
something MobKit's API cannot, the conversion says so here:

* ``DurableAgentSpec.placement`` (a Meerkat host ref) has no MobKit field: it is not
  passed to the customizer or the topology service, and MobKit's roster never sets it;
* an ``initial_message`` of content blocks is passed as its text blocks joined by
  newlines (the rule of MobKit's own wire format); an image block is refused
  (``INVALID_ARGUMENT``), as MobKit's API refuses it;
* ``AgentBuildDraft.provider_params`` and in-process tool handlers stay on the SDK's
  draft: the customizer service neither sees nor changes them.

Free-form JSON (a spec's ``context``, a draft's ``app_context``, a tool's
``input_schema``, the ``mob_definition``) passes as it is, whatever its JSON type:
the services carry it exactly (``mobkit.core.jsontext``), so the SDK gets back the
integers, floats and strings it sent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from meerkat_mobkit import identity_first_models as sdk_models
from meerkat_mobkit import identity_first_providers as sdk

from mobkit.core.errors import InvalidArgument
from mobkit.core.identity import AgentIdentity, AgentRuntimeId, FencingToken, SessionId
from mobkit.core.types import (
    Acquired,
    AgentAddressability,
    AgentBuildContext,
    AgentBuildDraft,
    Broken,
    ContinuityRecord,
    ContinuityResolveState,
    DurableAgentSpec,
    ExternalToolDef,
    JsonValue,
    LeaseAcquireResult,
    LeaseGrant,
    LeaseRenewResult,
    ManagedPeerEdge,
    Ready,
    Renewed,
    RosterContext,
    RuntimeMode,
    TopologyContext,
)

_MS = timedelta(milliseconds=1)

# -- continuity ---------------------------------------------------------------------------


def record_to_sdk(record: ContinuityRecord) -> sdk.ContinuityRecord:
    return sdk.ContinuityRecord(
        identity=record.identity,
        agent_runtime_id=record.agent_runtime_id,
        session_id=record.session_id,
        generation=record.generation,
        checkpoint_version=record.checkpoint_version,
    )


def record_from_sdk(record: sdk.ContinuityRecord) -> ContinuityRecord:
    return ContinuityRecord(
        identity=AgentIdentity(record.identity),
        agent_runtime_id=AgentRuntimeId(record.agent_runtime_id),
        session_id=SessionId(record.session_id),
        generation=record.generation,
        checkpoint_version=record.checkpoint_version,
    )


def resolve_state_to_sdk(state: ContinuityResolveState) -> sdk.ContinuityResolveState:
    if isinstance(state, Ready):
        return sdk.ContinuityResolveState("ready", record=record_to_sdk(state.record))
    if isinstance(state, Broken):
        failure = state.failure
        return sdk.ContinuityResolveState(
            "broken",
            failure=sdk.ContinuityFailure(
                identity=failure.identity,
                kind=failure.kind.value,
                record=record_to_sdk(failure.record) if failure.record is not None else None,
                detail=failure.detail,
            ),
        )
    return sdk.ContinuityResolveState("uninitialized")


# -- leases -------------------------------------------------------------------------------


def grant_to_sdk(grant: LeaseGrant) -> sdk.LeaseGrant:
    return sdk.LeaseGrant(
        identity=grant.identity, fencing_token=grant.fencing_token, ttl_ms=grant.ttl // _MS
    )


def grant_from_sdk(grant: sdk.LeaseGrant) -> LeaseGrant:
    if isinstance(grant.ttl_ms, bool) or not isinstance(grant.ttl_ms, int) or grant.ttl_ms < 0:
        raise InvalidArgument("ttl", f"must be a non-negative integer of ms for {grant.identity!r}")
    return LeaseGrant(
        AgentIdentity(grant.identity),
        FencingToken(grant.fencing_token),
        timedelta(milliseconds=grant.ttl_ms),
    )


def acquire_result_to_sdk(result: LeaseAcquireResult) -> sdk.LeaseAcquireResult:
    if isinstance(result, Acquired):
        return sdk.LeaseAcquireResult(
            "acquired", grant=grant_to_sdk(result.grant), identity=result.grant.identity
        )
    return sdk.LeaseAcquireResult("already_held", identity=result.identity, holder=result.holder)


def renew_result_to_sdk(result: LeaseRenewResult) -> sdk.LeaseRenewResult:
    if isinstance(result, Renewed):
        return sdk.LeaseRenewResult(
            "renewed", grant=grant_to_sdk(result.grant), identity=result.grant.identity
        )
    return sdk.LeaseRenewResult("lost", identity=result.identity)


def result_identity(result: LeaseAcquireResult | LeaseRenewResult) -> str:
    if isinstance(result, (Acquired, Renewed)):
        return result.grant.identity
    return result.identity  # AlreadyHeld or Lost


# -- roster -------------------------------------------------------------------------------


def spec_to_sdk(spec: DurableAgentSpec) -> sdk_models.DurableAgentSpec:
    return sdk_models.DurableAgentSpec(
        identity=spec.identity,
        profile=spec.profile,
        addressability=spec.addressability.value,
        display_name=spec.display_name,
        labels=dict(spec.labels),
        context=spec.context,
        additional_instructions=list(spec.additional_instructions),
        runtime_mode_override=(
            spec.runtime_mode_override.value if spec.runtime_mode_override is not None else None
        ),
        initial_message=spec.initial_message,
    )


def spec_from_sdk(spec: sdk_models.DurableAgentSpec) -> DurableAgentSpec:
    try:
        addressability = AgentAddressability(spec.addressability)
    except ValueError:
        raise InvalidArgument(
            "spec.addressability", f"unknown value {spec.addressability!r}"
        ) from None
    mode = spec.runtime_mode_override
    return DurableAgentSpec(
        identity=AgentIdentity(spec.identity),
        profile=spec.profile,
        addressability=addressability,
        display_name=spec.display_name,
        labels=dict(spec.labels),
        context=spec.context,
        additional_instructions=tuple(spec.additional_instructions),
        initial_message=_text(spec.initial_message),
        runtime_mode_override=RuntimeMode(mode) if mode is not None else None,
    )


def _text(content: str | list[sdk_models.ContentBlock] | None) -> str | None:
    if content is None or isinstance(content, str):
        return content
    parts: list[str] = []
    for i, block in enumerate(content):
        if not isinstance(block, sdk_models.TextBlock):
            raise InvalidArgument(
                f"spec.initial_message[{i}]", "only text content is supported by MobKit"
            )
        parts.append(block.text)
    return "\n".join(parts)


def roster_context_from_sdk(context: sdk_models.RosterContext | None) -> RosterContext:
    if context is None:
        return RosterContext()
    return RosterContext(
        mob_definition=context.mob_definition,
        previous_identities=tuple(AgentIdentity(i) for i in context.previous_identities),
    )


# -- topology -----------------------------------------------------------------------------


def topology_context_from_sdk(context: Any) -> TopologyContext:
    """The gateway's ``{"roster": [DurableAgentSpec, ...]}``, as JSON or as an object."""
    if context is None:
        return TopologyContext()
    roster = context.get("roster") if isinstance(context, Mapping) else context.roster
    specs = [
        s
        if isinstance(s, sdk_models.DurableAgentSpec)
        else sdk_models.DurableAgentSpec.from_dict(s)
        for s in roster or ()
    ]
    return TopologyContext(roster=tuple(spec_from_sdk(s) for s in specs))


def edge_to_sdk(edge: ManagedPeerEdge) -> sdk_models.ManagedPeerEdge:
    return sdk_models.ManagedPeerEdge(a=edge.a, b=edge.b)


# -- customizer ---------------------------------------------------------------------------


def build_context_from_sdk(context: sdk_models.AgentBuildContext) -> AgentBuildContext:
    return AgentBuildContext(
        identity=AgentIdentity(context.identity),
        active_peers=tuple(AgentIdentity(p) for p in context.active_peers),
        managed_edges=tuple(ManagedPeerEdge.new(e.a, e.b) for e in context.managed_edges),
    )


def draft_from_sdk(draft: sdk_models.AgentBuildDraft) -> AgentBuildDraft:
    return AgentBuildDraft(
        model=draft.model,
        system_prompt=draft.system_prompt,
        additional_instructions=list(draft.additional_instructions),
        labels=dict(draft.labels),
        app_context=draft.app_context,
        external_tools=[
            ExternalToolDef(t.name, t.description, t.input_schema) for t in draft.external_tools
        ],
    )


def apply_draft(target: sdk_models.AgentBuildDraft, source: AgentBuildDraft) -> None:
    """Write the customized fields onto the SDK's draft (the SDK mutates it in place)."""
    target.model = source.model
    target.system_prompt = source.system_prompt
    target.additional_instructions = list(source.additional_instructions)
    target.labels = dict(source.labels)
    target.app_context = source.app_context
    target.external_tools = [
        sdk_models.ExternalToolDef(t.name, t.description, t.input_schema)
        for t in source.external_tools
    ]


def session_context_to_json(context: Any) -> dict[str, JsonValue] | None:
    """``after_create``'s context (the SDK's ``SessionCreatedContext``) as a JSON object."""
    if context is None:
        return None
    if isinstance(context, Mapping):
        return dict(context)
    if dataclasses.is_dataclass(context) and not isinstance(context, type):
        return dataclasses.asdict(context)
    to_dict = getattr(context, "to_dict", None)
    if callable(to_dict):
        value = to_dict()
        if isinstance(value, dict):
            return value
    raise InvalidArgument("context", f"cannot send a {type(context).__name__} as JSON")
