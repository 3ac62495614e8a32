"""Round trips of structural events through ``mobkit.orchestrator.v1`` protos."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobkit.core.errors import InvalidArgument
from mobkit.core.types import MobStructuralEventEnvelope
from mobkit.gen.orchestrator.v1 import orchestrator_pb2
from mobkit.wire.orchestrator import event_from_proto, event_to_proto

text = st.text(max_size=12)
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
labels = st.dictionaries(text, text, max_size=3)

events = st.builds(
    MobStructuralEventEnvelope,
    event_id=text,
    cursor=st.integers(min_value=0, max_value=2**64 - 1),
    mob_id=text,
    timestamp_ms=st.integers(min_value=0, max_value=2**64 - 1),
    kind=text,
    data=st.none() | st.dictionaries(text, json_value, max_size=4),
    run_id=st.none() | text,
    step_id=st.none() | text,
    agent_identity=st.none() | text,
    mob_labels=labels,
    run_labels=labels,
)


@given(events)
def test_event_round_trip(env: MobStructuralEventEnvelope) -> None:
    msg = event_to_proto(env)
    wire = orchestrator_pb2.MobStructuralEventEnvelope.FromString(msg.SerializeToString())
    assert event_from_proto(wire) == env


def test_empty_data_and_absent_data_stay_distinct() -> None:
    base: dict[str, Any] = dict(event_id="e", cursor=1, mob_id="m", timestamp_ms=2, kind="k")
    empty = event_to_proto(MobStructuralEventEnvelope(**base, data={}))
    absent = event_to_proto(MobStructuralEventEnvelope(**base, data=None))
    assert empty.HasField("data") and not absent.HasField("data")
    assert event_from_proto(empty).data == {}
    assert event_from_proto(absent).data is None


def test_non_object_data_is_refused() -> None:
    env = MobStructuralEventEnvelope("e", 1, "m", 2, "k", data=[1, 2])
    with pytest.raises(InvalidArgument):
        event_to_proto(env)
