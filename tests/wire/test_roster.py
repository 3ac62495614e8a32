"""Round trips of the roster package's messages (specs, content, context, snapshots)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from json_support import json_values, same

from mobkit.core.errors import InvalidArgument, InvalidIdentity
from mobkit.core.types import AgentAddressability, DurableAgentSpec, RosterContext, RuntimeMode
from mobkit.gen.roster.v1 import roster_pb2, roster_service_pb2
from mobkit.roster.domain import RosterProblem, RosterSnapshot
from mobkit.testing.strategies import identities as valid_identities
from mobkit.wire import roster as wire

identities = valid_identities(max_size=12)
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)

specs = st.builds(
    DurableAgentSpec,
    identity=identities,
    profile=st.text(min_size=1, max_size=10),
    addressability=st.sampled_from(AgentAddressability),
    display_name=st.none() | st.text(min_size=1, max_size=10),
    labels=st.dictionaries(texts, texts, max_size=3),
    context=json_values,
    additional_instructions=st.lists(texts, max_size=3).map(tuple),
    initial_message=st.none() | texts,
    runtime_mode_override=st.none() | st.sampled_from(RuntimeMode),
)
single_problems = st.builds(
    RosterProblem,
    message=st.text(min_size=1, max_size=20),
    entry=st.none() | st.text(min_size=1, max_size=10),
    field=st.none() | st.text(min_size=1, max_size=10),
    unreadable=st.booleans(),
)
# A version with several problems lists each (the first's location above them all).
problems = single_problems | st.builds(
    RosterProblem,
    message=st.text(min_size=1, max_size=20),
    entry=st.none() | st.text(min_size=1, max_size=10),
    field=st.none() | st.text(min_size=1, max_size=10),
    problems=st.lists(single_problems, min_size=2, max_size=3).map(tuple),
)


@given(specs)
def test_spec_round_trip(spec: DurableAgentSpec) -> None:
    msg = wire.spec_to_proto(spec)
    again = roster_pb2.DurableAgentSpec.FromString(msg.SerializeToString())
    back = wire.spec_from_proto(again)
    assert back == spec and same(back.context, spec.context)


@given(
    st.lists(specs, max_size=4).map(tuple),
    st.integers(0, 2**64 - 1),
    st.none() | problems,
    st.dictionaries(st.text(min_size=1, max_size=5), st.text(min_size=1, max_size=5), max_size=3),
)
def test_snapshot_round_trip_through_both_responses(
    specs: tuple[DurableAgentSpec, ...],
    revision: int,
    problem: RosterProblem | None,
    profiles: dict[str, str],
) -> None:
    snapshot = RosterSnapshot(specs, revision, profiles, problem)
    get = roster_service_pb2.GetRosterResponse.FromString(
        wire.get_roster_response(snapshot).SerializeToString()
    )
    watch = roster_service_pb2.WatchRosterResponse.FromString(
        wire.watch_roster_response(snapshot).SerializeToString()
    )
    for back in (wire.snapshot_from_proto(get), wire.snapshot_from_proto(watch)):
        assert back == snapshot
        assert all(same(b.context, s.context) for b, s in zip(back.specs, specs, strict=True))


@given(json_values, st.lists(identities, max_size=4).map(tuple))
def test_roster_context_round_trip(definition: object, previous: tuple[str, ...]) -> None:
    context = RosterContext(mob_definition=definition, previous_identities=previous)  # type: ignore[arg-type]
    back = wire.roster_context_from_proto(wire.roster_context_to_proto(context))
    assert back == context and same(back.mob_definition, definition)


def test_unset_enums_mean_the_seed_defaults() -> None:
    spec = wire.spec_from_proto(roster_pb2.DurableAgentSpec(identity="a", profile="p"))
    assert spec.addressability is AgentAddressability.ADDRESSABLE
    assert spec.runtime_mode_override is None
    assert spec.context is None and spec.initial_message is None and spec.display_name is None


def test_content_blocks_of_text_become_text_and_images_are_refused() -> None:
    blocks = roster_pb2.ContentInput(
        blocks=roster_pb2.ContentInput.Blocks(
            blocks=[roster_pb2.ContentBlock(text="one"), roster_pb2.ContentBlock(text="two")]
        )
    )
    assert wire.content_from_proto(blocks) == "one\ntwo"
    image = roster_pb2.ContentInput(
        blocks=roster_pb2.ContentInput.Blocks(
            blocks=[roster_pb2.ContentBlock(image=roster_pb2.ImageBlock(media_type="image/png"))]
        )
    )
    with pytest.raises(InvalidArgument) as info:
        wire.content_from_proto(image)
    assert info.value.field == "content.blocks[0]"


def test_invalid_spec_fields_are_refused() -> None:
    with pytest.raises(InvalidIdentity):
        wire.spec_from_proto(roster_pb2.DurableAgentSpec(identity="a b", profile="p"))
    with pytest.raises(InvalidIdentity):  # the seed's DisplayName::parse error
        wire.spec_from_proto(
            roster_pb2.DurableAgentSpec(identity="a", profile="p", display_name="")
        )
    with pytest.raises(InvalidArgument) as info:
        wire.spec_to_proto(DurableAgentSpec(identity="a", profile="p", context={1, 2}))  # type: ignore[arg-type]
    assert info.value.field == "spec.context"
    with pytest.raises(InvalidArgument) as info:
        wire.spec_from_proto(
            roster_pb2.DurableAgentSpec(identity="a", profile="p", context_json="[1,"),
            "context.roster[2]",
        )
    assert info.value.field == "context.roster[2].context_json"
