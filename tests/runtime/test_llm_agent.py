"""The ``llm`` agent kind in the reference runtime, against an OpenAI-compatible server
on loopback (mobkit.testing.fake_openai): streamed replies, history kept as session
state, tool calls and peer messages, the bounded tool loop, retries and timeouts."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from mobkit.core.errors import InvalidArgument
from mobkit.core.types import AgentBuildDraft, DispatchInput, ExternalToolDef, TokenUsage
from mobkit.observability import metrics
from mobkit.runtime.agents.llm import LlmSettings, llm_kind
from mobkit.runtime.domain import ModelFailed, ModelUnavailable
from mobkit.runtime.local import LocalAgentRuntime
from mobkit.runtime.sdk import TurnContext, TurnProgress
from mobkit.testing.fake_openai import CallTools, Fail, FakeOpenAI, Say, Slow

DRAFT = AgentBuildDraft(
    model="tiny",
    system_prompt="You are terse.",
    additional_instructions=["Answer in English."],
    external_tools=[ExternalToolDef("clock.now", "the time", {"type": "object"})],
)


@pytest.fixture
def model() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def runtime_for(model: FakeOpenAI, **settings: Any) -> LocalAgentRuntime:
    values = {"base_url": model.base_url, "max_retries": 2, "timeout": 10.0, **settings}
    return LocalAgentRuntime({"llm": llm_kind(LlmSettings(**values))})


async def open_session(runtime: LocalAgentRuntime, draft: AgentBuildDraft = DRAFT) -> str:
    return (await runtime.create_session("alice", "llm", draft)).session_id


def roles(request: dict[str, Any]) -> list[str]:
    return [m["role"] for m in request["messages"]]


def tokens(kind: str) -> float:
    labels = {"model": "tiny", "kind": kind}
    return metrics.REGISTRY.get_sample_value("mobkit_llm_tokens_total", labels) or 0.0


async def test_a_turn_streams_the_model_reply_with_the_drafts_prompt(model: FakeOpenAI) -> None:
    model.script(Say("hello there", chunks=4, prompt_tokens=12, completion_tokens=3))
    runtime = runtime_for(model)
    sid = await open_session(runtime)
    before = tokens("prompt"), tokens("completion")
    outcome = await runtime.run_turn(sid, DispatchInput("hi"))
    assert outcome.output == "hello there"
    assert outcome.usage == TokenUsage(12, 3)
    assert (tokens("prompt") - before[0], tokens("completion") - before[1]) == (12, 3)
    [request] = model.requests
    assert request["model"] == "tiny" and request["stream"] is True
    assert request["messages"] == [
        {"role": "system", "content": "You are terse.\n\nAnswer in English."},
        {"role": "user", "content": "hi"},
    ]
    assert request["tools"][0]["function"]["name"] == "clock_now"
    assert request["stream_options"] == {"include_usage": True}


async def test_the_api_key_goes_as_a_bearer_token(
    model: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOBKIT_TEST_MODEL_KEY", "sk-test-123")
    model.script(Say("authorised"))
    runtime = runtime_for(model, api_key_env="MOBKIT_TEST_MODEL_KEY")
    outcome = await runtime.run_turn(await open_session(runtime), DispatchInput("hi"))
    assert outcome.output == "authorised"
    assert model.authorizations == ["Bearer sk-test-123"]


async def test_deltas_reach_the_progress_sink_in_order(model: FakeOpenAI) -> None:
    model.script(Say("one two three", chunks=3))
    seen: list[TurnProgress] = []

    async def sink(progress: TurnProgress) -> None:
        seen.append(progress)

    agent = llm_kind(LlmSettings(base_url=model.base_url))("alice", DRAFT)
    ctx = TurnContext("alice", "s-1", 1, DRAFT, _progress=sink)
    assert await agent.on_turn(ctx, "count") == "one two three"
    assert len(seen) == 3 and all(p.kind == "delta" for p in seen)
    assert "".join(p.text for p in seen) == "one two three"

    seen.clear()  # a tool call shows as its start and end, under the granted name
    model.script(CallTools([("clock_now", {})]), Say("noon", chunks=1))

    async def tool_caller(name: str, arguments: dict[str, Any]) -> Any:
        return "12:00"

    ctx = TurnContext("alice", "s-1", 2, DRAFT, _call_tool=tool_caller, _progress=sink)
    assert await agent.on_turn(ctx, "time?") == "noon"
    assert [(p.kind, p.text) for p in seen] == [
        ("tool_call_started", "clock.now"),
        ("tool_call_finished", "clock.now"),
        ("delta", "noon"),
    ]


async def test_history_is_session_state_and_survives_a_resume(model: FakeOpenAI) -> None:
    runtime = runtime_for(model)
    sid = await open_session(runtime)
    assert (await runtime.run_turn(sid, DispatchInput("first"))).output == "heard 1: first"
    assert (await runtime.run_turn(sid, DispatchInput("second"))).output == "heard 2: second"
    snapshot = await runtime.export_snapshot(sid)

    elsewhere = runtime_for(model)  # another process: only the snapshot travels
    await elsewhere.resume_session("alice", "llm", sid, "rt-1", snapshot, DRAFT)
    assert (await elsewhere.run_turn(sid, DispatchInput("third"))).output == "heard 3: third"
    assert model.requests[-1]["messages"][1:] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "heard 1: first"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "heard 2: second"},
        {"role": "user", "content": "third"},
    ]


async def test_a_tool_call_and_a_peer_message_in_one_turn(model: FakeOpenAI) -> None:
    model.script(
        CallTools([("clock_now", {"tz": "UTC"}), ("message_peer", {"peer": "bob", "text": "hi"})]),
        Say("it is noon and bob waved"),
    )
    calls: list[tuple[str, Any]] = []

    async def tool_caller(name: str, arguments: dict[str, Any]) -> Any:
        calls.append((name, arguments))
        return {"now": "12:00"}

    async def peer_sender(peer: str, text: str) -> str:
        calls.append((peer, text))
        return "bob waves"

    runtime = runtime_for(model)
    sid = await open_session(runtime)
    outcome = await runtime.run_turn(
        sid,
        DispatchInput("time?"),
        peers=("bob",),
        peer_sender=peer_sender,
        tool_caller=tool_caller,
    )
    assert outcome.output == "it is noon and bob waved"
    assert calls == [("clock.now", {"tz": "UTC"}), ("bob", "hi")]
    assert outcome.usage == TokenUsage(20, 10)  # both requests
    second = model.requests[1]
    assert roles(second) == ["system", "user", "assistant", "tool", "tool"]
    assert [m["content"] for m in second["messages"][3:]] == ['{"now":"12:00"}', "bob waves"]
    peer_tool = second["tools"][-1]["function"]
    assert peer_tool["name"] == "message_peer"
    assert peer_tool["parameters"]["properties"]["peer"]["enum"] == ["bob"]


async def test_a_peer_outside_the_topology_is_an_error_the_model_reads(model: FakeOpenAI) -> None:
    model.script(CallTools([("message_peer", {"peer": "mallory", "text": "psst"})]), Say("ok"))
    runtime = runtime_for(model)
    sid = await open_session(runtime)
    await runtime.run_turn(sid, DispatchInput("go"), peers=("bob",))
    answer = json.loads(model.requests[1]["messages"][-1]["content"])
    assert answer["error"] == "TOPOLOGY_VIOLATION"


async def test_the_tool_loop_answers_at_its_bound(model: FakeOpenAI) -> None:
    model.script(CallTools([("clock_now", {})], times=2), Say("enough"))
    runtime = runtime_for(model, max_tool_rounds=2)
    sid = await open_session(runtime)

    async def tool_caller(name: str, arguments: dict[str, Any]) -> Any:
        return "tick"

    outcome = await runtime.run_turn(sid, DispatchInput("loop"), tool_caller=tool_caller)
    assert outcome.output == "enough"
    assert [r["tool_choice"] for r in model.requests] == ["auto", "auto", "none"]


async def test_tool_calls_past_the_bound_fail_the_turn_and_roll_it_back(
    model: FakeOpenAI,
) -> None:
    model.script(CallTools([("clock_now", {})], times=3))
    runtime = runtime_for(model, max_tool_rounds=2)
    sid = await open_session(runtime)

    async def tool_caller(name: str, arguments: dict[str, Any]) -> Any:
        return "tick"

    with pytest.raises(ModelFailed, match="max_tool_rounds"):
        await runtime.run_turn(sid, DispatchInput("loop"), tool_caller=tool_caller)
    assert len(model.requests) == 3
    # Rolled back: the next turn's history is empty.
    assert (await runtime.run_turn(sid, DispatchInput("again"))).output == "heard 1: again"


async def test_a_429_then_success_is_retried_inside_the_turn(model: FakeOpenAI) -> None:
    model.script(Fail(429), Say("after the wait"))
    runtime = runtime_for(model)
    sid = await open_session(runtime)
    assert (await runtime.run_turn(sid, DispatchInput("hi"))).output == "after the wait"
    assert len(model.requests) == 2


async def test_a_run_of_500s_fails_the_turn_after_the_retries(model: FakeOpenAI) -> None:
    model.script(Fail(500, times=3))
    runtime = runtime_for(model, max_retries=2)
    sid = await open_session(runtime)
    with pytest.raises(ModelUnavailable, match="HTTP 500") as caught:
        await runtime.run_turn(sid, DispatchInput("hi"))
    assert caught.value.reason == "MODEL_UNAVAILABLE" and caught.value.grpc_code == "UNAVAILABLE"
    assert len(model.requests) == 3
    assert (await runtime.export_snapshot(sid)) == (await runtime.export_snapshot(sid))
    assert (await runtime.run_turn(sid, DispatchInput("later"))).turn == 1


async def test_a_reply_slower_than_the_timeout_fails_the_turn(model: FakeOpenAI) -> None:
    model.script(Slow(30, times=2))
    runtime = runtime_for(model, timeout=0.3, max_retries=1)
    sid = await open_session(runtime)
    with pytest.raises(ModelUnavailable, match=r"no answer within 0\.3 s"):
        await runtime.run_turn(sid, DispatchInput("hi"))
    assert len(model.requests) == 2


async def test_a_refused_request_is_not_retried(model: FakeOpenAI) -> None:
    model.script(Fail(400))
    runtime = runtime_for(model)
    sid = await open_session(runtime)
    with pytest.raises(ModelFailed, match="HTTP 400: scripted 400"):
        await runtime.run_turn(sid, DispatchInput("hi"))
    assert len(model.requests) == 1


async def test_an_unreachable_endpoint_is_model_unavailable(model: FakeOpenAI) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    runtime = LocalAgentRuntime({"llm": llm_kind(LlmSettings(base_url=url, max_retries=0))})
    sid = await open_session(runtime)
    with pytest.raises(ModelUnavailable, match="cannot reach"):
        await runtime.run_turn(sid, DispatchInput("hi"))


async def test_history_is_trimmed_by_whole_exchanges(model: FakeOpenAI) -> None:
    model.script(CallTools([("clock_now", {})]))
    runtime = runtime_for(model, history_max_messages=5)

    async def tool_caller(name: str, arguments: dict[str, Any]) -> Any:
        return "tick"

    sid = await open_session(runtime)
    for text in ("one", "two", "three"):
        await runtime.run_turn(sid, DispatchInput(text), tool_caller=tool_caller)
    # "one" took 4 messages (user, call, result, reply); "two" and "three" two each.
    sent = model.requests[-1]["messages"][1:]
    assert sent == [
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "heard 2: two"},  # "one" still fitted
        {"role": "user", "content": "three"},
    ]


def test_draft_labels_override_the_runtime_settings() -> None:
    base = LlmSettings(base_url="http://a/v1", temperature=None)
    tuned = base.for_draft({"llm.base_url": "http://b/v1", "llm.temperature": "0.2", "x": "y"})
    assert (tuned.base_url, tuned.temperature) == ("http://b/v1", 0.2)
    with pytest.raises(InvalidArgument, match=r"labels\.llm\.temprature"):
        base.for_draft({"llm.temprature": "1"})
    with pytest.raises(InvalidArgument, match="between 0 and 100"):
        base.for_draft({"llm.max_tool_rounds": "1000"})


async def test_a_draft_without_a_model_fails_its_turn_clearly(model: FakeOpenAI) -> None:
    runtime = runtime_for(model)
    sid = await open_session(runtime, AgentBuildDraft())
    with pytest.raises(InvalidArgument, match="needs a model"):
        await runtime.run_turn(sid, DispatchInput("hi"))
    assert model.requests == []


async def test_the_fake_server_also_answers_plain_completions(model: FakeOpenAI) -> None:
    model.script(Say("plain"), CallTools([("f", {"a": 1})]))
    client = openai.AsyncOpenAI(base_url=model.base_url, api_key="k", max_retries=0)
    first = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}]
    )
    assert first.choices[0].message.content == "plain"
    second = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}]
    )
    [call] = second.choices[0].message.tool_calls or []
    assert json.loads(call.function.arguments) == {"a": 1}  # type: ignore[union-attr]
    await client.close()


async def test_the_summarize_strategy_folds_dropped_exchanges_into_a_summary(
    model: FakeOpenAI,
) -> None:
    runtime = runtime_for(model, history_max_messages=2, history_strategy="summarize")
    sid = await open_session(runtime, AgentBuildDraft(model="tiny"))
    await runtime.run_turn(sid, DispatchInput("my name is Ada"))
    assert len(model.requests) == 1  # nothing dropped yet: no summary asked
    model.script(Say("heard 2: where am I?"), Say("The user is Ada.", prompt_tokens=7))
    second = await runtime.run_turn(sid, DispatchInput("where am I?"))
    assert second.usage == TokenUsage(17, 10)  # the summary's request counts too
    summarise = model.requests[1 + 1]
    assert "tools" not in summarise
    assert "user: my name is Ada" in summarise["messages"][1]["content"]
    await runtime.run_turn(sid, DispatchInput("who am I?"))
    system = model.requests[-2]["messages"][0]  # the turn, before its own summary
    assert system["role"] == "system" and system["content"].endswith("The user is Ada.")
    with pytest.raises(InvalidArgument, match="truncate, summarize"):
        LlmSettings().for_draft({"llm.history_strategy": "forget"})
