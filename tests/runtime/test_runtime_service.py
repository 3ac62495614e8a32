"""The agent runtime in-process and behind a real AgentRuntimeService on port 0.

Contract tests run on both: ``LocalAgentRuntime`` directly, and ``GrpcAgentRuntime``
through a real server hosting the runtime service (so every call crosses the wire
and the server's error translation).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from json_support import same

from mobkit.core import jsontext
from mobkit.core.errors import InvalidArgument, StoreCorruption, TopologyViolation
from mobkit.core.types import AgentBuildDraft, DispatchInput, SessionSnapshot
from mobkit.gen.continuity.v1 import continuity_pb2
from mobkit.gen.roster.v1 import roster_pb2
from mobkit.gen.runtime.v1 import runtime_service_pb2 as pb
from mobkit.gen.runtime.v1 import runtime_service_pb2_grpc as pb_grpc
from mobkit.runtime.client import GrpcAgentRuntime
from mobkit.runtime.domain import AgentRuntime, CallbackUnavailable, SessionNotFound
from mobkit.runtime.local import LocalAgentRuntime
from mobkit.runtime.sdk import Agent, TurnContext
from mobkit.server.config import Settings
from mobkit.server.host import start_services

PROFILES = {"coordinator": "notebook", "worker": "echo"}
DRAFT = AgentBuildDraft(model="m", labels={"team": "a"})


@pytest.fixture
async def served() -> AsyncIterator[tuple[Any, grpc.aio.Channel]]:
    """The runtime service on 127.0.0.1:0, configured with a [profiles] section."""
    settings = Settings(listen="127.0.0.1:0", sections={"profiles": dict(PROFILES)})
    server, resources = await start_services(["runtime"], settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield resources, channel
    finally:
        await channel.close()
        await server.stop(0)
        await resources.close()


@pytest.fixture(params=["local", "grpc"])
async def runtime(request: pytest.FixtureRequest, served: Any) -> AgentRuntime:
    if request.param == "local":
        return LocalAgentRuntime(profiles=dict(PROFILES))
    _, channel = served
    return GrpcAgentRuntime(channel, timeout=10)


async def say(runtime: AgentRuntime, session_id: str, text: str, **kw: Any) -> str:
    return (await runtime.run_turn(session_id, DispatchInput(text), **kw)).output


# -- the contract, in-process and over gRPC -------------------------------------------------


async def test_create_run_export_resume_round_trip(runtime: AgentRuntime) -> None:
    info = await runtime.create_session("planner", "coordinator", DRAFT)
    assert info.session_id and info.agent_runtime_id
    await say(runtime, info.session_id, "remember the milk")
    reply = await say(runtime, info.session_id, "remember the eggs")
    assert reply == ("[planner turn 2] noted 'the eggs'. I remember: the milk; the eggs")
    snapshot = await runtime.export_snapshot(info.session_id)
    assert await runtime.export_snapshot(info.session_id) == snapshot  # export is read-only

    # The session goes away (crash, failover): resume it from the snapshot.
    await runtime.close_session(info.session_id)
    with pytest.raises(SessionNotFound):
        await say(runtime, info.session_id, "recall")
    resumed = await runtime.resume_session(
        "planner", "coordinator", info.session_id, info.agent_runtime_id, snapshot, DRAFT
    )
    assert (resumed.session_id, resumed.agent_runtime_id) == (
        info.session_id,
        info.agent_runtime_id,
    )
    assert await say(runtime, info.session_id, "recall") == (
        "[planner turn 3] recalling. I remember: the milk; the eggs"
    )


async def test_notebook_state_survives_export_into_another_runtime(runtime: AgentRuntime) -> None:
    """A snapshot taken here resumes in a different runtime instance (another replica)."""
    info = await runtime.create_session("scribe", "notebook", DRAFT)
    await say(runtime, info.session_id, "remember blue")
    snapshot = await runtime.export_snapshot(info.session_id)
    other = LocalAgentRuntime()
    await other.resume_session("scribe", "notebook", info.session_id, "rt-1", snapshot, DRAFT)
    assert await say(other, info.session_id, "recall") == (
        "[scribe turn 2] recalling. I remember: blue"
    )
    # And back: the other runtime's snapshot resumes here, without naming the profile.
    back = await other.export_snapshot(info.session_id)
    await runtime.close_session(info.session_id)
    await runtime.resume_session("scribe", "", info.session_id, "rt-1", back, DRAFT)
    assert "turn 3" in await say(runtime, info.session_id, "hello")


@pytest.mark.parametrize(
    "app_context",
    [{"budget": 3, "big": 2**64 + 1, "f": 3.0}, ["a", None, -(2**70)], "text", 0, None],
)
async def test_the_app_context_comes_back_exactly_as_structured_output(
    runtime: AgentRuntime, app_context: Any
) -> None:
    """The notebook's ``context`` command: the draft's app context, as the runtime got it."""
    draft = AgentBuildDraft(app_context=app_context)
    info = await runtime.create_session("scribe", "notebook", draft)
    outcome = await runtime.run_turn(info.session_id, DispatchInput("context"))
    assert same(outcome.structured_output, app_context)
    shown = "none" if app_context is None else jsontext.encode(app_context)
    assert f"my context: {shown}" in outcome.output
    plain = await runtime.run_turn(info.session_id, DispatchInput("recall"))
    assert plain.structured_output is None


class Oddity(Agent):
    """Gives a structured output that is not JSON."""

    kind = "oddity"

    async def on_turn(self, ctx: TurnContext, message: str) -> str:
        self.state["seen"] = self.state.get("seen", 0) + 1
        ctx.structured_output = {"when": {1, 2}} if message == "bad" else [message]
        return "ok"


async def test_a_structured_output_that_is_not_json_fails_the_turn_and_changes_nothing() -> None:
    runtime = LocalAgentRuntime(agents={"oddity": Oddity})
    info = await runtime.create_session("o", "oddity", AgentBuildDraft())
    assert same(
        (await runtime.run_turn(info.session_id, DispatchInput("x"))).structured_output, ["x"]
    )
    before = await runtime.export_snapshot(info.session_id)
    with pytest.raises(InvalidArgument) as err:
        await runtime.run_turn(info.session_id, DispatchInput("bad"))
    assert err.value.field == "structured_output"
    assert await runtime.export_snapshot(info.session_id) == before


async def test_unknown_session_is_session_not_found(runtime: AgentRuntime) -> None:
    with pytest.raises(SessionNotFound) as err:
        await say(runtime, "sess-missing", "hi")
    assert err.value.metadata["session_id"] == "sess-missing"
    with pytest.raises(SessionNotFound):
        await runtime.export_snapshot("sess-missing")
    await runtime.close_session("sess-missing")  # closing is idempotent


@pytest.mark.parametrize(
    "data",
    [
        b"\x00garbage",
        b"{}",
        json.dumps({"format": 99, "state": {}, "turns": 0}).encode(),
        json.dumps({"format": 1, "state": [], "turns": 0}).encode(),
    ],
)
async def test_undecodable_snapshot_is_store_corruption(runtime: AgentRuntime, data: bytes) -> None:
    with pytest.raises(StoreCorruption):
        await runtime.resume_session(
            "planner", "notebook", "sess-1", "rt-1", SessionSnapshot(data), DRAFT
        )
    with pytest.raises(SessionNotFound):  # nothing was opened
        await runtime.export_snapshot("sess-1")


async def test_unknown_profile_is_invalid_argument(runtime: AgentRuntime) -> None:
    with pytest.raises(InvalidArgument) as err:
        await runtime.create_session("planner", "no-such-profile", DRAFT)
    assert err.value.metadata["field"] == "profile"


async def test_create_with_session_id_is_idempotent(runtime: AgentRuntime) -> None:
    first = await runtime.create_session("planner", "notebook", DRAFT, session_id="sess-fixed")
    assert first.session_id == "sess-fixed"
    await say(runtime, "sess-fixed", "remember x")
    again = await runtime.create_session("planner", "notebook", DRAFT, session_id="sess-fixed")
    assert again.agent_runtime_id == first.agent_runtime_id
    assert "turn 2" in await say(runtime, "sess-fixed", "recall")  # unchanged, not recreated
    with pytest.raises(InvalidArgument):
        await runtime.create_session("other", "notebook", DRAFT, session_id="sess-fixed")


async def test_resume_of_an_open_session_with_its_own_snapshot_keeps_it(
    runtime: AgentRuntime,
) -> None:
    info = await runtime.create_session("planner", "notebook", DRAFT)
    await say(runtime, info.session_id, "remember a")
    snapshot = await runtime.export_snapshot(info.session_id)
    await runtime.resume_session(
        "planner", "notebook", info.session_id, info.agent_runtime_id, snapshot, DRAFT
    )
    assert "turn 2" in await say(runtime, info.session_id, "recall")
    # An older snapshot is authoritative: the session rewinds to it.
    await runtime.resume_session(
        "planner", "notebook", info.session_id, info.agent_runtime_id, snapshot, DRAFT
    )
    assert "turn 2" in await say(runtime, info.session_id, "recall")
    with pytest.raises(InvalidArgument):
        await runtime.resume_session(
            "intruder", "notebook", info.session_id, info.agent_runtime_id, snapshot, DRAFT
        )


async def test_messaging_a_non_peer_is_a_topology_violation(runtime: AgentRuntime) -> None:
    info = await runtime.create_session("planner", "notebook", DRAFT)

    async def deliver(peer: str, text: str) -> str:
        return f"{peer} got {text}"

    with pytest.raises(TopologyViolation) as err:
        await say(
            runtime, info.session_id, "ask stranger hi", peers=("worker",), peer_sender=deliver
        )
    assert err.value.metadata == {"from": "planner", "to": "stranger"}
    # The failed turn left no trace.
    assert "turn 1" in await say(runtime, info.session_id, "recall")


async def test_peer_messages_reach_the_orchestrator_from_either_runtime(
    runtime: AgentRuntime,
) -> None:
    """In-process the callback is called directly; over gRPC through RunTurnStream."""
    info = await runtime.create_session("planner", "notebook", DRAFT)
    sent: list[tuple[str, str]] = []

    async def deliver(peer: str, text: str) -> str:
        sent.append((peer, text))
        return "done"

    turn = say(runtime, info.session_id, "ask worker hi", peers=("worker",), peer_sender=deliver)
    assert await turn == "[planner turn 1] asked worker. I remember: worker said: done"
    assert sent == [("worker", "hi")]


async def test_without_callbacks_a_peer_message_is_callback_unavailable(
    runtime: AgentRuntime,
) -> None:
    """A turn given no peer_sender (over gRPC: the unary RunTurn of v1 callers)."""
    info = await runtime.create_session("planner", "notebook", DRAFT)
    with pytest.raises(CallbackUnavailable):
        await say(runtime, info.session_id, "ask worker hi", peers=("worker",))
    assert "turn 1" in await say(runtime, info.session_id, "recall")


# -- the wire: codes and reasons ---------------------------------------------------------------


def _status(err: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str]:
    status = rpc_status.from_call(err)
    assert status is not None
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
    assert len(infos) == 1
    assert infos[0].domain == "mobkit.dev"
    return err.code(), infos[0].reason


async def _fails(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return _status(err.value)


async def test_error_codes_on_the_wire(served: Any) -> None:
    _, channel = served
    stub = pb_grpc.AgentRuntimeServiceStub(channel)
    text = roster_pb2.ContentInput(text="hi")
    assert await _fails(stub.RunTurn(pb.RunTurnRequest(session_id="nope", content=text))) == (
        grpc.StatusCode.NOT_FOUND,
        "SESSION_NOT_FOUND",
    )
    assert await _fails(stub.ExportSnapshot(pb.ExportSnapshotRequest(session_id="nope"))) == (
        grpc.StatusCode.NOT_FOUND,
        "SESSION_NOT_FOUND",
    )
    bad = pb.ResumeSessionRequest(
        identity="planner",
        session_id="s",
        agent_runtime_id="r",
        snapshot=continuity_pb2.SessionSnapshot(data=b"\xffnot json"),
    )
    assert await _fails(stub.ResumeSession(bad)) == (grpc.StatusCode.DATA_LOSS, "STORE_CORRUPTION")
    unknown = pb.CreateSessionRequest(identity="planner", profile="ghost")
    assert await _fails(stub.CreateSession(unknown)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    invalid = pb.CreateSessionRequest(identity="two words", profile="echo")
    assert await _fails(stub.CreateSession(invalid)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_IDENTITY",
    )
    assert await _fails(stub.CloseSession(pb.CloseSessionRequest())) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    created = await stub.CreateSession(
        pb.CreateSessionRequest(identity="lead", profile="coordinator")
    )
    ask = pb.RunTurnRequest(
        session_id=created.session_id,
        content=roster_pb2.ContentInput(text="ask stranger hi"),
        peers=["worker"],
    )
    assert await _fails(stub.RunTurn(ask)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "TOPOLOGY_VIOLATION",
    )
    ask.content.text = "ask worker hi"
    assert await _fails(stub.RunTurn(ask)) == (
        grpc.StatusCode.UNAVAILABLE,
        "CALLBACK_UNAVAILABLE",
    )


async def test_service_registers_the_in_process_runtime_with_its_profiles(served: Any) -> None:
    resources, channel = served
    local = resources.providers["runtime"]
    assert isinstance(local, LocalAgentRuntime)
    assert local.knows_profile("coordinator") and local.knows_profile("worker")
    # A session created over gRPC lives in the same in-process runtime.
    info = await GrpcAgentRuntime(channel).create_session("w1", "worker", DRAFT)
    assert await say(local, info.session_id, "ping") == "ping"


async def test_profiles_naming_an_unknown_agent_kind_fail_at_start() -> None:
    settings = Settings(listen="127.0.0.1:0", sections={"profiles": {"x": "no-such-kind"}})
    with pytest.raises(InvalidArgument):
        await start_services(["runtime"], settings)


async def test_a_notebook_reply_stays_short_however_many_notes_it_holds() -> None:
    runtime = LocalAgentRuntime()
    info = await runtime.create_session("planner", "notebook", DRAFT)
    for i in range(30):
        reply = await say(runtime, info.session_id, f"remember note {i}")
    assert reply.endswith("30 notes, the newest: " + "; ".join(f"note {i}" for i in range(20, 30)))
    recall = await say(runtime, info.session_id, "recall")
    assert recall.endswith("I remember: " + "; ".join(f"note {i}" for i in range(30)))
