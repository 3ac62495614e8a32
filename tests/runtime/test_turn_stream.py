"""A turn's callbacks and progress, in-process and over RunTurnStream.

Every contract test runs on ``LocalAgentRuntime`` directly and on ``GrpcAgentRuntime``
through a real server (the same runtime behind the AgentRuntimeService on port 0):
peer messages and tool calls inside one turn, their errors coming back as the same
exceptions, concurrent callbacks, progress in order, and a stream that breaks
mid-turn leaving the state unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from mobkit.core.errors import NotActive, TopologyViolation
from mobkit.core.types import AgentBuildDraft, DispatchInput
from mobkit.gen.roster.v1 import roster_pb2
from mobkit.gen.runtime.v1 import runtime_service_pb2 as pb
from mobkit.gen.runtime.v1 import runtime_service_pb2_grpc as pb_grpc
from mobkit.modules.domain import ToolFailed, ToolNotGranted
from mobkit.runtime.agents import BUILTIN_AGENTS
from mobkit.runtime.client import GrpcAgentRuntime
from mobkit.runtime.domain import AgentRuntime, CallbackUnavailable
from mobkit.runtime.local import LocalAgentRuntime
from mobkit.runtime.sdk import Agent, TurnContext, TurnProgress
from mobkit.runtime.servicer import ERRORS, SERVICE_NAME, AgentRuntimeServicer
from mobkit.server.app import ServerConfig, ServiceRegistration, build_server
from mobkit.testing.suite import reason, until

DRAFT = AgentBuildDraft()


class Errand(Agent):
    """``both``: asks its peer and calls a tool in one turn; ``fan``: asks two peers at
    once; ``careful PEER``: asks, and reports the refusal instead of failing; any
    other text is streamed back in two deltas."""

    kind = "errand"

    async def on_turn(self, ctx: TurnContext, message: str) -> str:
        self.state["turns"] = self.state.get("turns", 0) + 1
        command, _, rest = message.partition(" ")
        if command == "both":
            reply = await ctx.send_to_peer(ctx.peers[0], "status?")
            result = await ctx.call_tool("clock.now", {"utc_offset_minutes": 60, "big": 2**70})
            self.state["last"] = [reply, result]
            return f"peer said {reply}; tool gave {result}"
        if command == "fan":
            replies = await asyncio.gather(*(ctx.send_to_peer(p, "go") for p in ctx.peers))
            return " + ".join(replies)
        if command == "careful":
            try:
                return await ctx.send_to_peer(rest, "hello")
            except (TopologyViolation, NotActive) as exc:
                return f"refused: {exc.reason}"
        await ctx.emit_delta(message[:2])
        await ctx.emit_delta(message[2:])
        return message


AGENTS = {**BUILTIN_AGENTS, "errand": Errand}


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    """A LocalAgentRuntime with the test agents behind a real server on port 0."""
    servicer = AgentRuntimeServicer(LocalAgentRuntime(agents=AGENTS))
    registration = ServiceRegistration(
        SERVICE_NAME,
        lambda server: pb_grpc.add_AgentRuntimeServiceServicer_to_server(servicer, server),
        ERRORS,
    )
    server, port = build_server(ServerConfig([registration], grace=0))
    await server.start()
    chan = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield chan
    finally:
        await chan.close()
        await server.stop(0)


@pytest.fixture(params=["local", "grpc"])
def runtime(request: pytest.FixtureRequest, channel: grpc.aio.Channel) -> AgentRuntime:
    if request.param == "local":
        return LocalAgentRuntime(agents=AGENTS)
    return GrpcAgentRuntime(channel, timeout=10, turn_timeout=30)


class Orchestrator:
    """The callbacks a turn gets: a topology, a peer that answers, granted tools."""

    def __init__(self, edges: set[str], granted: set[str]) -> None:
        self.edges, self.granted = edges, granted
        self.calls: list[tuple[str, Any]] = []

    async def peer_sender(self, peer: str, text: str) -> str:
        self.calls.append(("peer", (peer, text)))
        if peer not in self.edges:
            raise TopologyViolation("lead", peer)
        return f"{peer}: ok"

    async def tool_caller(self, name: str, arguments: dict[str, Any]) -> Any:
        self.calls.append(("tool", (name, arguments)))
        if name not in self.granted:
            raise ToolNotGranted("lead", name)
        if name == "clock.broken":
            raise ToolFailed(name, "it broke")
        return {"now": "12:00+01:00", "echo": arguments}


async def start(runtime: AgentRuntime, kind: str = "errand") -> str:
    return (await runtime.create_session("lead", kind, DRAFT)).session_id


async def turn(runtime: AgentRuntime, sid: str, text: str, o: Orchestrator, **kw: Any) -> Any:
    return await runtime.run_turn(
        sid,
        DispatchInput(text),
        peers=kw.pop("peers", ("helper",)),
        peer_sender=o.peer_sender,
        tool_caller=o.tool_caller,
        **kw,
    )


async def test_a_peer_message_and_a_tool_call_in_one_turn(runtime: AgentRuntime) -> None:
    sid = await start(runtime)
    o = Orchestrator({"helper"}, {"clock.now"})
    outcome = await turn(runtime, sid, "both", o)
    big = 2**70  # a tool's integers stay integers across the wire
    assert outcome.output == (
        "peer said helper: ok; tool gave "
        + str({"now": "12:00+01:00", "echo": {"utc_offset_minutes": 60, "big": big}})
    )
    assert o.calls == [
        ("peer", ("helper", "status?")),
        ("tool", ("clock.now", {"utc_offset_minutes": 60, "big": big})),
    ]
    assert outcome.turn == 1


async def test_the_notebook_asks_a_peer_and_calls_a_tool(runtime: AgentRuntime) -> None:
    """The built-in agent's callbacks, which a remote runtime used to refuse."""
    sid = await start(runtime, "notebook")
    o = Orchestrator({"helper"}, {"clock.now"})
    assert "helper said: helper: ok" in (await turn(runtime, sid, "ask helper hi", o)).output
    called = await turn(runtime, sid, "tool clock.now {}", o)
    assert 'called clock.now: {"echo": {}, "now": "12:00+01:00"}' in called.output


async def test_the_agent_sees_the_orchestrators_refusal(runtime: AgentRuntime) -> None:
    """The orchestrator enforces topology: the agent gets TOPOLOGY_VIOLATION and may
    handle it."""
    sid = await start(runtime)
    o = Orchestrator({"helper"}, set())
    outcome = await turn(runtime, sid, "careful stranger", o, peers=("helper", "stranger"))
    assert outcome.output == "refused: TOPOLOGY_VIOLATION"


@pytest.mark.parametrize(
    ("text", "granted", "error", "metadata"),
    [
        ("both", set(), ToolNotGranted, {"identity": "lead", "tool": "clock.now"}),
        ("tool clock.broken {}", {"clock.broken"}, ToolFailed, {"tool": "clock.broken"}),
    ],
)
async def test_a_refused_tool_call_is_the_same_error_and_leaves_no_trace(
    runtime: AgentRuntime,
    text: str,
    granted: set[str],
    error: type[ToolNotGranted | ToolFailed],
    metadata: dict[str, str],
) -> None:
    sid = await start(runtime, "notebook" if text.startswith("tool") else "errand")
    o = Orchestrator({"helper"}, granted)
    before = await runtime.export_snapshot(sid)
    with pytest.raises(error) as err:
        await turn(runtime, sid, text, o)
    assert metadata.items() <= err.value.metadata.items()
    assert await runtime.export_snapshot(sid) == before


async def test_topology_violation_from_the_orchestrator_fails_the_turn(
    runtime: AgentRuntime,
) -> None:
    sid = await start(runtime, "notebook")
    o = Orchestrator(set(), set())  # "helper" is listed as a peer but has no edge now
    before = await runtime.export_snapshot(sid)
    with pytest.raises(TopologyViolation) as err:
        await turn(runtime, sid, "ask helper hi", o)
    assert err.value.metadata == {"from": "lead", "to": "helper"}
    assert await runtime.export_snapshot(sid) == before


async def test_a_missing_callback_is_callback_unavailable(runtime: AgentRuntime) -> None:
    sid = await start(runtime, "notebook")
    o = Orchestrator({"helper"}, set())
    with pytest.raises(CallbackUnavailable) as err:
        await runtime.run_turn(
            sid, DispatchInput("tool clock.now {}"), peers=("helper",), peer_sender=o.peer_sender
        )
    assert err.value.metadata == {"session_id": sid, "callback": "a tool call"}


async def test_callbacks_run_concurrently(runtime: AgentRuntime) -> None:
    """Both peer messages are outstanding at once: each answer waits for the other."""
    sid = await start(runtime)
    arrived: list[str] = []
    both = asyncio.Event()

    async def peer_sender(peer: str, text: str) -> str:
        arrived.append(peer)
        if len(arrived) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 10)
        return peer.upper()

    outcome = await runtime.run_turn(
        sid, DispatchInput("fan"), peers=("a", "b"), peer_sender=peer_sender
    )
    assert outcome.output == "A + B"
    assert sorted(arrived) == ["a", "b"]


async def test_progress_arrives_in_order(runtime: AgentRuntime) -> None:
    sid = await start(runtime)
    seen: list[TurnProgress] = []

    async def sink(event: TurnProgress) -> None:
        seen.append(event)

    o = Orchestrator({"helper"}, {"clock.now"})
    outcome = await turn(runtime, sid, "hello", o, progress=sink)
    assert outcome.output == "hello"
    assert seen == [TurnProgress("delta", "he"), TurnProgress("delta", "llo")]

    seen.clear()
    notebook = await start(runtime, "notebook")
    await turn(runtime, notebook, 'tool clock.now {"x": 1}', o, progress=sink)
    o.granted.clear()
    with pytest.raises(ToolNotGranted):
        await turn(runtime, notebook, "tool clock.now {}", o, progress=sink)
    started, finished = (
        TurnProgress("tool_call_started", "clock.now"),
        TurnProgress("tool_call_finished", "clock.now"),
    )
    assert seen == [started, finished, started, finished]


async def test_a_turn_cancelled_mid_callback_leaves_the_state_unchanged(
    runtime: AgentRuntime,
) -> None:
    """The orchestrator goes away while the agent waits for its peer (the stream
    breaks): the turn is undone, and the next one runs on the old state."""
    sid = await start(runtime, "notebook")
    o = Orchestrator({"helper"}, set())
    await turn(runtime, sid, "remember a", o)
    before = await runtime.export_snapshot(sid)
    waiting = asyncio.Event()

    async def stuck(peer: str, text: str) -> str:
        waiting.set()
        await asyncio.sleep(60)
        return "never"

    task = asyncio.create_task(
        runtime.run_turn(sid, DispatchInput("ask helper x"), peers=("helper",), peer_sender=stuck)
    )
    await asyncio.wait_for(waiting.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def unchanged() -> bool:
        return await runtime.export_snapshot(sid) == before

    await until(unchanged, "the turn rolled back", timeout=10)  # remote: on its own time
    assert "turn 2] recalling. I remember: a" in (await turn(runtime, sid, "recall", o)).output


# -- the protocol on the wire ----------------------------------------------------------------


def _start(session_id: str, text: str) -> pb.RunTurnStreamRequest:
    return pb.RunTurnStreamRequest(
        start=pb.RunTurnRequest(
            session_id=session_id, content=roster_pb2.ContentInput(text=text), peers=["helper"]
        )
    )


async def test_protocol_errors_are_invalid_argument(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.AgentRuntimeServiceStub(channel)
    created = await stub.CreateSession(pb.CreateSessionRequest(identity="lead", profile="errand"))
    sid = created.session_id

    answer = pb.RunTurnStreamRequest(callback_result=pb.CallbackResult(call_id="1"))
    for first in (answer, None):
        call = stub.RunTurnStream(timeout=10)
        if first is not None:
            await call.write(first)
        await call.done_writing()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # An answer to a call nobody made, while the turn waits on its own.
    call = stub.RunTurnStream(timeout=10)
    await call.write(_start(sid, "both"))
    asked = await call.read()
    assert asked.callback.peer_message.to_identity == "helper"
    await call.write(pb.RunTurnStreamRequest(callback_result=pb.CallbackResult(call_id="99")))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_raw_stream_answers_callbacks_by_call_id(channel: grpc.aio.Channel) -> None:
    """The exchange a runtime client in any language sees."""
    stub = pb_grpc.AgentRuntimeServiceStub(channel)
    created = await stub.CreateSession(pb.CreateSessionRequest(identity="lead", profile="errand"))
    call = stub.RunTurnStream(timeout=10)
    await call.write(_start(created.session_id, "both"))
    asked = await call.read()
    peer = pb.CallbackResult(call_id=asked.callback.call_id, peer_reply=pb.PeerReply(text="fine"))
    await call.write(pb.RunTurnStreamRequest(callback_result=peer))
    tool = await call.read()
    assert tool.callback.tool_call.name == "clock.now"
    refused = pb.CallbackResult(
        call_id=tool.callback.call_id,
        error=pb.CallbackError(
            reason="TOOL_NOT_GRANTED",
            message="not granted",
            metadata={"identity": "lead", "tool": "clock.now"},
        ),
    )
    await call.write(pb.RunTurnStreamRequest(callback_result=refused))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not granted" in (err.value.details() or "")


async def test_undecodable_stream_messages_are_invalid_argument(channel: grpc.aio.Channel) -> None:
    """The interceptor decodes each message of a bidirectional call as it is read."""
    raw = channel.stream_stream("/mobkit.runtime.v1.AgentRuntimeService/RunTurnStream")
    call = raw(timeout=10)
    await call.write(b"\xff\xff\xff garbage")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(err.value) == "INVALID_ARGUMENT"


class Malformed(pb_grpc.AgentRuntimeServiceServicer):
    """A runtime that asks for a tool without a name, and replies with the answer's reason."""

    async def RunTurnStream(self, requests: Any, context: Any) -> AsyncIterator[Any]:
        it = aiter(requests)
        await anext(it)
        bad = pb.CallbackRequest(call_id="c-1", tool_call=pb.ToolCall(name=""))
        yield pb.RunTurnStreamResponse(callback=bad)
        answer = (await anext(it)).callback_result
        reply = f"{answer.call_id}: {answer.error.reason} {answer.error.metadata['field']}"
        yield pb.RunTurnStreamResponse(output=pb.RunTurnResponse(output=reply))


async def test_a_malformed_callback_is_answered_invalid_argument() -> None:
    server = grpc.aio.server()
    pb_grpc.add_AgentRuntimeServiceServicer_to_server(Malformed(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as chan:
            o = Orchestrator(set(), {"clock.now"})
            outcome = await GrpcAgentRuntime(chan).run_turn(
                "s", DispatchInput("x"), tool_caller=o.tool_caller
            )
        assert outcome.output == "c-1: INVALID_ARGUMENT callback.tool_call.name"
        assert o.calls == []  # nothing ran
    finally:
        await server.stop(0)
