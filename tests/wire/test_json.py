"""``mobkit.wire.json``: the ``*_json`` text fields carry any JSON value exactly; the
deprecated Struct beside them is still written for older readers where it can hold
the value, and read when an older writer sent only it."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import given
from json_support import json_values, nest, same

from mobkit.core.errors import InvalidArgument
from mobkit.gen.customizer.v1 import customizer_pb2
from mobkit.gen.orchestrator.v1 import orchestrator_pb2
from mobkit.gen.roster.v1 import roster_pb2
from mobkit.gen.runtime.v1 import runtime_service_pb2
from mobkit.wire.json import STRUCT_MAX_DEPTH, get_json, put_json


def _through_bytes(msg: Any) -> Any:
    return type(msg).FromString(msg.SerializeToString())


@given(json_values)
def test_any_value_round_trips_exactly_through_every_field_kind(value: Any) -> None:
    for msg, name in (
        (roster_pb2.DurableAgentSpec(), "context"),  # a Struct twin
        (orchestrator_pb2.AgentEvent(), "payload"),  # a Value twin
    ):
        put_json(msg, name, value)
        assert same(get_json(_through_bytes(msg), name), value)


def test_struct_is_filled_for_older_readers_when_it_can_hold_the_value() -> None:
    spec = roster_pb2.DurableAgentSpec()
    put_json(spec, "context", {"budget": 3, "ratio": 0.5, "tags": ["a", None, True]})
    old_reading = json_format.MessageToDict(_through_bytes(spec).context)
    assert old_reading == {"budget": 3.0, "ratio": 0.5, "tags": ["a", None, True]}


@pytest.mark.parametrize(
    "value",
    [
        "a string",
        [1, 2],
        7,
        {"n": 10**400},  # no double holds it
        {"s": "\ud800"},  # not UTF-8
        nest(1, STRUCT_MAX_DEPTH + 1, True),
    ],
)
def test_struct_stays_unset_when_it_cannot_hold_the_value(value: Any) -> None:
    spec = roster_pb2.DurableAgentSpec()
    put_json(spec, "context", value)
    assert not spec.HasField("context")
    assert same(get_json(_through_bytes(spec), "context"), value)


def test_a_struct_written_at_the_depth_bound_parses_in_the_deepest_message() -> None:
    deepest = nest(1, STRUCT_MAX_DEPTH, True)
    tool = customizer_pb2.ExternalToolDef(name="t")
    put_json(tool, "input_schema", deepest)
    request = runtime_service_pb2.CreateSessionRequest(
        identity="a", profile="p", draft=customizer_pb2.AgentBuildDraft(external_tools=[tool])
    )
    back = _through_bytes(request)  # protobuf's 100-message nesting limit holds
    assert back.draft.external_tools[0].HasField("input_schema")


def test_an_older_writers_struct_is_read_with_whole_numbers_as_integers() -> None:
    spec = roster_pb2.DurableAgentSpec()
    spec.context.update({"budget": 3, "ratio": 0.5, "big": 2**60, "list": [1, 2.0]})
    assert same(
        get_json(spec, "context"),
        {"budget": 3, "ratio": 0.5, "big": float(2**60), "list": [1, 2]},
    )


def test_the_text_wins_over_the_struct() -> None:
    spec = roster_pb2.DurableAgentSpec(context_json="[18446744073709551617]")
    spec.context.update({"stale": 1})
    assert same(get_json(spec, "context"), [18446744073709551617])


def test_none_and_null_mean_no_value() -> None:
    spec = roster_pb2.DurableAgentSpec()
    put_json(spec, "context", None)
    assert spec.context_json == "" and not spec.HasField("context")
    assert get_json(spec, "context") is None
    assert get_json(roster_pb2.DurableAgentSpec(context_json="null"), "context") is None


@pytest.mark.parametrize("text", ["{", "NaN", "[1,]", "1e999", "[" * 200 + "]" * 200])
def test_text_that_is_not_json_is_invalid_argument_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        get_json(roster_pb2.DurableAgentSpec(context_json=text), "context", "spec")
    assert info.value.field == "spec.context_json"
    assert info.value.reason == "INVALID_ARGUMENT"
