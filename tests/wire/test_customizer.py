"""Round trips of the customizer package's messages (build context, drafts, tools)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobkit.core.errors import InvalidArgument
from mobkit.core.types import AgentBuildContext, AgentBuildDraft, ExternalToolDef, ManagedPeerEdge
from mobkit.gen.customizer.v1 import customizer_pb2
from mobkit.wire import customizer as wire

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
names = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=6)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000).map(float) | texts,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(texts, c, max_size=3),
    max_leaves=6,
)
objects = st.dictionaries(texts, json_values, max_size=3)
tools = st.builds(ExternalToolDef, name=names, description=texts, input_schema=objects)
drafts = st.builds(
    AgentBuildDraft,
    model=st.none() | texts,
    system_prompt=st.none() | texts,
    additional_instructions=st.lists(texts, max_size=3),
    labels=st.dictionaries(texts, texts, max_size=3),
    app_context=st.none() | objects,
    external_tools=st.lists(tools, max_size=2),
)


@given(drafts)
def test_draft_round_trip(draft: AgentBuildDraft) -> None:
    msg = customizer_pb2.AgentBuildDraft.FromString(wire.draft_to_proto(draft).SerializeToString())
    assert wire.draft_from_proto(msg) == draft


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


def test_non_object_json_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        wire.draft_to_proto(AgentBuildDraft(app_context=[1]))
    with pytest.raises(InvalidArgument):
        wire.tool_to_proto(ExternalToolDef("t", "d", input_schema="string"))
    with pytest.raises(InvalidArgument):
        wire.tool_from_proto(customizer_pb2.ExternalToolDef(name=""))
