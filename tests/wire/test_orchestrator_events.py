"""Round trips of structural events through ``mobkit.orchestrator.v1`` protos."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from json_support import json_values, same

from mobkit.core.errors import InvalidArgument
from mobkit.core.types import MobStructuralEventEnvelope
from mobkit.gen.orchestrator.v1 import orchestrator_pb2
from mobkit.wire.orchestrator import event_from_proto, event_to_proto

text = st.text(max_size=12)
labels = st.dictionaries(text, text, max_size=3)

events = st.builds(
    MobStructuralEventEnvelope,
    event_id=text,
    cursor=st.integers(min_value=0, max_value=2**64 - 1),
    mob_id=text,
    timestamp_ms=st.integers(min_value=0, max_value=2**64 - 1),
    kind=text,
    data=json_values,
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
    back = event_from_proto(wire)
    assert back == env and same(back.data, env.data)


def test_empty_data_and_absent_data_stay_distinct() -> None:
    base: dict[str, Any] = dict(event_id="e", cursor=1, mob_id="m", timestamp_ms=2, kind="k")
    empty = event_to_proto(MobStructuralEventEnvelope(**base, data={}))
    absent = event_to_proto(MobStructuralEventEnvelope(**base, data=None))
    assert empty.HasField("data") and not absent.HasField("data")
    assert event_from_proto(empty).data == {}
    assert event_from_proto(absent).data is None


def test_data_that_is_not_json_is_refused() -> None:
    env = MobStructuralEventEnvelope("e", 1, "m", 2, "k", data={"x": float("inf")})
    with pytest.raises(InvalidArgument) as info:
        event_to_proto(env)
    assert info.value.field == "event.data"
    with pytest.raises(InvalidArgument) as info:
        event_from_proto(orchestrator_pb2.MobStructuralEventEnvelope(data_json="[1 2]"))
    assert info.value.field == "event.data_json"
