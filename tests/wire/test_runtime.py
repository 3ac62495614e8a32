"""Round trips of the AgentRuntimeService messages (``mobkit.wire.runtime``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from google.protobuf.message import Message
from hypothesis import given
from hypothesis import strategies as st
from json_support import json_values, same

from mobkit.core.errors import InvalidArgument, InvalidIdentity
from mobkit.core.types import (
    AgentBuildDraft,
    DispatchInput,
    DispatchOrigin,
    ExternalToolDef,
    RuntimeMode,
    SessionSnapshot,
)
from mobkit.gen.roster.v1 import roster_pb2
from mobkit.gen.runtime.v1 import runtime_service_pb2 as pb
from mobkit.runtime.domain import SessionInfo, TurnOutcome
from mobkit.wire import runtime as wire

text = st.text(max_size=10)
identity = st.text(
    alphabet=st.characters(blacklist_categories=("Z", "C"), blacklist_characters="/"),
    min_size=1,
    max_size=10,
)
json_schemas = json_values.filter(lambda v: v is not None)  # None reads back as {}

drafts = st.builds(
    AgentBuildDraft,
    model=st.none() | text,
    system_prompt=st.none() | text,
    additional_instructions=st.lists(text, max_size=3),
    labels=st.dictionaries(text, text, max_size=3),
    app_context=json_values,
    # A tool needs a name (tool_from_proto refuses an empty one).
    external_tools=st.lists(
        st.builds(ExternalToolDef, text.filter(bool), text, json_schemas), max_size=2
    ),
)
snapshots = st.builds(SessionSnapshot, st.binary(max_size=64))
nonempty = st.text(min_size=1, max_size=10)


def _wire(msg: Message) -> Any:
    """Through real bytes, as a server would see it."""
    return type(msg).FromString(msg.SerializeToString())


def _declared(msg_type: Any, name: str) -> bool:
    return name in msg_type.DESCRIPTOR.fields_by_name


@given(
    st.builds(
        wire.CreateSessionCall,
        identity=identity,
        profile=nonempty,
        draft=drafts,
        session_id=st.none() | nonempty,
        agent_runtime_id=st.none() | nonempty,
        runtime_mode=st.none() | st.sampled_from(RuntimeMode),
    )
)
def test_create_request_round_trip(call: wire.CreateSessionCall) -> None:
    back = wire.create_request_from_proto(_wire(wire.create_request_to_proto(call)))
    if not _declared(pb.CreateSessionRequest, "agent_runtime_id"):
        call = dataclasses.replace(call, agent_runtime_id=None)  # not carried yet
    assert back == call


@given(
    st.builds(
        wire.ResumeSessionCall,
        identity=identity,
        session_id=nonempty,
        agent_runtime_id=nonempty,
        snapshot=snapshots,
        draft=drafts,
        profile=text,
    )
)
def test_resume_request_round_trip(call: wire.ResumeSessionCall) -> None:
    back = wire.resume_request_from_proto(_wire(wire.resume_request_to_proto(call)))
    if not _declared(pb.ResumeSessionRequest, "profile"):
        call = dataclasses.replace(call, profile="")  # taken from the snapshot instead
    assert back == call


@given(
    st.builds(
        wire.RunTurnCall,
        session_id=nonempty,
        message=st.builds(
            DispatchInput,
            content=text,
            origin=st.sampled_from(DispatchOrigin),
            correlation_id=st.none() | text,
        ),
        peers=st.lists(identity, unique=True, max_size=4).map(tuple),
    )
)
def test_run_turn_request_round_trip(call: wire.RunTurnCall) -> None:
    assert wire.run_turn_request_from_proto(_wire(wire.run_turn_request_to_proto(call))) == call


@given(
    st.builds(
        TurnOutcome,
        output=text,
        turn=st.integers(min_value=0, max_value=2**32),
        structured_output=json_values,
    )
)
def test_turn_outcome_round_trip(outcome: TurnOutcome) -> None:
    back = wire.turn_outcome_from_proto(_wire(wire.turn_outcome_to_proto(outcome)))
    if not _declared(pb.RunTurnResponse, "turn"):
        outcome = dataclasses.replace(outcome, turn=0)
    assert back == outcome and same(back.structured_output, outcome.structured_output)


@given(st.builds(SessionInfo, nonempty, nonempty, st.integers(min_value=0, max_value=2**32)))
def test_session_info_round_trips(info: SessionInfo) -> None:
    created = wire.create_response_from_proto(_wire(wire.create_response_to_proto(info)))
    resumed = wire.resume_response_from_proto(_wire(wire.resume_response_to_proto(info)))
    if not _declared(pb.CreateSessionResponse, "turns"):
        info = dataclasses.replace(info, turns=0)
    assert created == info == resumed


@given(drafts)
def test_draft_round_trip(draft: AgentBuildDraft) -> None:
    back = wire.draft_from_proto(_wire(wire.draft_to_proto(draft)))
    assert back == draft and same(back.app_context, draft.app_context)


@given(snapshots)
def test_snapshot_round_trip(snapshot: SessionSnapshot) -> None:
    assert wire.snapshot_from_proto(_wire(wire.snapshot_to_proto(snapshot))) == snapshot


def test_unspecified_origin_is_system_and_idempotency_key_stays_behind() -> None:
    msg = pb.RunTurnRequest(session_id="s", content=roster_pb2.ContentInput(text="hi"))
    call = wire.run_turn_request_from_proto(msg)
    assert call.message == DispatchInput("hi", DispatchOrigin.SYSTEM)
    sent = wire.run_turn_request_to_proto(
        wire.RunTurnCall("s", DispatchInput("hi", idempotency_key="k"))
    )
    assert wire.run_turn_request_from_proto(sent).message.idempotency_key is None


@pytest.mark.parametrize(
    ("msg", "convert", "error"),
    [
        (
            pb.CreateSessionRequest(identity="a", profile=""),
            wire.create_request_from_proto,
            InvalidArgument,
        ),
        (
            pb.CreateSessionRequest(identity="a b", profile="p"),
            wire.create_request_from_proto,
            InvalidIdentity,
        ),
        (
            pb.CreateSessionRequest(identity="a", profile="p", session_id=""),
            wire.create_request_from_proto,
            InvalidArgument,
        ),
        (
            pb.ResumeSessionRequest(identity="a", session_id="s", agent_runtime_id="r"),
            wire.resume_request_from_proto,
            InvalidArgument,
        ),
        (pb.RunTurnRequest(session_id=""), wire.run_turn_request_from_proto, InvalidArgument),
        (
            pb.RunTurnRequest(session_id="s", peers=["x", "x"]),
            wire.run_turn_request_from_proto,
            InvalidArgument,
        ),
        (
            pb.RunTurnRequest(session_id="s", peers=["x/y"]),
            wire.run_turn_request_from_proto,
            InvalidIdentity,
        ),
    ],
)
def test_malformed_requests_are_refused(msg: Message, convert: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        convert(msg)


def test_values_that_are_not_json_are_refused() -> None:
    with pytest.raises(InvalidArgument) as info:
        wire.turn_outcome_to_proto(TurnOutcome("out", 1, structured_output=[b"bytes"]))
    assert info.value.field == "structured_output"
    with pytest.raises(InvalidArgument) as info:
        wire.turn_outcome_from_proto(pb.RunTurnResponse(structured_output_json="{'a': 1}"))
    assert info.value.field == "structured_output_json"
