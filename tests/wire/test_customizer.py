"""Round trips of the customizer package's messages (build context, drafts, tools)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from json_support import json_values, same

from mobkit.core.errors import InvalidArgument
from mobkit.core.types import AgentBuildContext, AgentBuildDraft, ExternalToolDef, ManagedPeerEdge
from mobkit.gen.customizer.v1 import customizer_pb2
from mobkit.wire import customizer as wire

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


def _not_none(value: object) -> bool:
    return value is not None


names = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=6)
# A JSON Schema is any JSON value (`true` is a schema too); None is no app context.
tools = st.builds(
    ExternalToolDef, name=names, description=texts, input_schema=json_values.filter(_not_none)
)
drafts = st.builds(
    AgentBuildDraft,
    model=st.none() | texts,
    system_prompt=st.none() | texts,
    additional_instructions=st.lists(texts, max_size=3),
    labels=st.dictionaries(texts, texts, max_size=3),
    app_context=json_values,
    external_tools=st.lists(tools, max_size=2),
)


@given(drafts)
def test_draft_round_trip(draft: AgentBuildDraft) -> None:
    msg = customizer_pb2.AgentBuildDraft.FromString(wire.draft_to_proto(draft).SerializeToString())
    back = wire.draft_from_proto(msg)
    assert back == draft
    assert same(back.app_context, draft.app_context)
    for got, sent in zip(back.external_tools, draft.external_tools, strict=True):
        assert same(got.input_schema, sent.input_schema)


def test_empty_strings_survive_where_presence_matters() -> None:
    draft = AgentBuildDraft(model="", system_prompt="", app_context={})
    assert wire.draft_from_proto(wire.draft_to_proto(draft)) == draft
    assert wire.draft_from_proto(wire.draft_to_proto(AgentBuildDraft())) == AgentBuildDraft()


@given(st.lists(names, min_size=1, max_size=4, unique=True))
def test_build_context_round_trip(peers: list[str]) -> None:
    identity = peers[0]
    context = AgentBuildContext(
        identity=identity,  # type: ignore[arg-type]
        active_peers=tuple(peers[1:]),  # type: ignore[arg-type]
        managed_edges=tuple(ManagedPeerEdge.new(identity, p) for p in peers[1:]),
    )
    msg = customizer_pb2.AgentBuildContext.FromString(
        wire.build_context_to_proto(context).SerializeToString()
    )
    assert wire.build_context_from_proto(msg) == context


def test_values_that_are_not_json_are_refused_naming_the_field() -> None:
    with pytest.raises(InvalidArgument) as info:
        wire.draft_to_proto(AgentBuildDraft(app_context={"when": object()}))
    assert info.value.field == "draft.app_context"
    with pytest.raises(InvalidArgument) as info:
        wire.tool_to_proto(ExternalToolDef("t", "d", input_schema={"x": float("nan")}))
    assert info.value.field == "external_tools.t.input_schema"
    with pytest.raises(InvalidArgument):
        wire.tool_from_proto(customizer_pb2.ExternalToolDef(name=""))


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        (customizer_pb2.AgentBuildDraft(app_context_json="{"), "draft.app_context_json"),
        (
            customizer_pb2.AgentBuildDraft(
                external_tools=[customizer_pb2.ExternalToolDef(name="t", input_schema_json="NaN")]
            ),
            "draft.external_tools[0].input_schema_json",
        ),
    ],
)
def test_json_text_that_is_not_json_names_its_field(
    msg: customizer_pb2.AgentBuildDraft, field: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        wire.draft_from_proto(msg)
    assert info.value.field == field
