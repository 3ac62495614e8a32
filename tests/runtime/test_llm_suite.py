"""The ``llm`` kind through the whole suite, against a loopback Chat Completions server:
a module tool call and a peer message inside one turn, token usage in the receipt,
an idempotent retry that does not ask the model again, and a history that survives
a SIGKILL failover between two replicas on real etcd."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from mobkit.core.holder import Holder
from mobkit.core.types import AgentBuildDraft, DispatchInput, TokenUsage
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.runtime.client import GrpcAgentRuntime
from mobkit.runtime.domain import ModelUnavailable
from mobkit.server.config import Settings
from mobkit.server.host import start_services
from mobkit.testing.fake_openai import CallTools, Fail, FakeOpenAI, Say, Slow
from mobkit.testing.fleet import ACTIVE, Fleet, all_statuses, between_owners, wait_fleet
from mobkit.testing.processes import ServeProcess
from mobkit.testing.servers import running_services
from mobkit.testing.suite import send_request, stub, text_input, until

pytestmark = pytest.mark.timeout(240)

ROSTER = """
[profiles]
llm = "llm"
notebook = "notebook"

[[agents]]
identity = "alice"
profile = "llm"

[[agents]]
identity = "bob"
profile = "notebook"
"""


def sections(model: FakeOpenAI) -> dict[str, Any]:
    return {
        "llm": {"base_url": model.base_url, "max_retries": 1, "timeout": 20},
        "modules": {
            "start_timeout": 30.0,
            "restart_wait": 20.0,
            "module": [{"id": "clock", "python_module": "mobkit.examples_modules.clock"}],
        },
        # The customizer decides alice's model, prompt and tools: the draft carries them.
        "customizer": {
            "rules": [
                {
                    "match": {"identity": "alice"},
                    "model": "tiny",
                    "system_prompt": "You are alice.",
                    "external_tools": [{"name": "clock.now"}],
                }
            ]
        },
    }


@pytest.fixture
def model() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def orch(tmp_path: Path, etcd_session: Any, model: FakeOpenAI) -> AsyncIterator[Any]:
    roster = tmp_path / "roster.toml"
    roster.write_text(ROSTER)
    async with running_services(
        ["all"],
        etcd_endpoints=[etcd_session.endpoint],
        etcd_prefix=f"/llm-{uuid.uuid4().hex[:8]}",
        roster=str(roster),
        data_dir=str(tmp_path),
        continuity_backend="sqlite",
        lease_ttl=3.0,
        sections=sections(model),
    ) as (_server, channel, _):
        o = stub(channel)

        async def both_active() -> bool:
            reply = await o.ListIdentityStatuses(svc.ListIdentityStatusesRequest(), timeout=5)
            return sum(s.state == ACTIVE for s in reply.statuses) == 2

        await until(both_active, "alice and bob active", timeout=60)
        yield o


async def test_a_tool_call_and_a_peer_message_inside_one_turn(orch: Any, model: FakeOpenAI) -> None:
    model.script(
        CallTools(
            [
                ("clock_now", {"utc_offset_minutes": 60}),
                ("message_peer", {"peer": "bob", "text": "remember lunch"}),
            ],
            prompt_tokens=30,
            completion_tokens=7,
        ),
        Say("the time is noted and bob remembers lunch", prompt_tokens=50, completion_tokens=9),
    )
    reply = await orch.Send(send_request("alice", "what time is it? tell bob"), timeout=60)
    receipt = reply.receipt
    assert receipt.output == "the time is noted and bob remembers lunch"
    assert (receipt.usage.prompt_tokens, receipt.usage.completion_tokens) == (80, 16)
    assert receipt.usage.total_tokens == 96
    first, second = model.requests
    assert first["model"] == "tiny"
    assert first["messages"][0] == {"role": "system", "content": "You are alice."}
    assert [t["function"]["name"] for t in first["tools"]] == ["clock_now", "message_peer"]
    clock, peer = (m["content"] for m in second["messages"][-2:])
    assert "+01:00" in clock  # the real module ran
    assert "[bob turn 1] noted 'lunch'" in peer  # bob's notebook answered through the orchestrator
    bob = await orch.GetIdentityStatus(svc.GetIdentityStatusRequest(identity="bob"), timeout=5)
    assert bob.status.checkpoint_version == 1


async def test_an_idempotent_retry_does_not_ask_the_model_again(
    orch: Any, model: FakeOpenAI
) -> None:
    first = await orch.Send(send_request("alice", "hello", key="k-1"), timeout=30)
    again = await orch.Send(send_request("alice", "hello", key="k-1"), timeout=30)
    assert len(model.requests) == 1
    assert again.receipt == first.receipt
    assert first.receipt.output == "heard 1: hello"
    assert first.receipt.usage.total_tokens == 15  # the replay keeps the usage too
    nxt = await orch.Send(send_request("alice", "and now?", key="k-2"), timeout=30)
    assert nxt.receipt.output == "heard 2: and now?"
    assert len(model.requests) == 2


async def test_behind_the_runtime_service_usage_and_model_errors_cross_the_wire(
    model: FakeOpenAI,
) -> None:
    settings = Settings(listen="127.0.0.1:0", sections={"llm": sections(model)["llm"]})
    server, resources = await start_services(["runtime"], settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            runtime = GrpcAgentRuntime(channel, timeout=30)
            draft = AgentBuildDraft(model="tiny")
            sid = (await runtime.create_session("alice", "llm", draft)).session_id
            model.script(Say("over the wire", prompt_tokens=4, completion_tokens=2), Fail(500, 2))
            outcome = await runtime.run_turn(sid, DispatchInput("hi"))
            assert (outcome.output, outcome.usage) == ("over the wire", TokenUsage(4, 2))
            with pytest.raises(ModelUnavailable) as caught:  # 1 retry: both 500s used
                await runtime.run_turn(sid, DispatchInput("again"))
            assert caught.value.model == "tiny" and "HTTP 500" in caught.value.detail
            assert len(model.requests) == 3
    finally:
        await server.stop(0)
        await resources.close()


def _llm_config(tmp: Path, model: FakeOpenAI) -> Path:
    path = tmp / "llm.toml"
    path.write_text(f'[llm]\nbase_url = "{model.base_url}"\nmodel = "tiny"\nmax_retries = 1\n')
    return path


async def _send(channels: list[grpc.aio.Channel], text: str) -> Any:
    """Send through whichever replica answers, retrying the documented failover answers."""
    reply: Any = None

    async def sent() -> bool:
        nonlocal reply
        for channel in channels:
            try:
                reply = await stub(channel).Send(send_request("alice", text), timeout=20)
                return True
            except grpc.aio.AioRpcError as err:
                if not between_owners(err):
                    raise
        return False

    await until(sent, f"alice answered {text!r}", timeout=90)
    return reply


@contextlib.asynccontextmanager
async def two_replicas(
    tmp_path: Path, etcd_session: Any, model: FakeOpenAI
) -> AsyncIterator[tuple[list[ServeProcess], list[grpc.aio.Channel]]]:
    """Replicas ``a`` and ``b`` (``serve all``, 2 s leases) of one ``llm`` identity,
    alice, Active on one of them, and a channel to each."""
    roster = tmp_path / "roster.toml"
    roster.write_text(
        '[profiles]\nllm = "llm"\n\n[[agents]]\nidentity = "alice"\nprofile = "llm"\n'
    )
    fleet = Fleet(tmp_path, etcd_session.endpoint, roster, ttl=2.0)
    extra = ["--config", str(_llm_config(tmp_path, model))]
    try:
        replicas = [fleet.add("a", extra=extra), fleet.add("b", extra=extra)]
        channels = [grpc.aio.insecure_channel(r.address) for r in replicas]
        try:
            await wait_fleet(channels[0], 1, owners=1, timeout=60)
            yield replicas, channels
        finally:
            for channel in channels:
                await channel.close()
    finally:
        fleet.close()


async def test_the_history_survives_a_sigkill_failover(
    tmp_path: Path, etcd_session: Any, model: FakeOpenAI
) -> None:
    async with two_replicas(tmp_path, etcd_session, model) as ((a, b), channels):
        first = await _send(channels, "my name is Ada")
        assert first.receipt.output == "heard 1: my name is Ada"
        [status] = await all_statuses(channels[0])
        owner = Holder(status.owner).instance
        victim, survivor = (a, channels[1]) if owner == "a" else (b, channels[0])
        victim.kill()  # SIGKILL: nothing is released or flushed

        second = await _send([survivor], "what is my name?")
        assert second.receipt.output == "heard 2: what is my name?"
        assert second.receipt.fencing_token > first.receipt.fencing_token
        assert model.requests[-1]["messages"] == [
            {"role": "user", "content": "my name is Ada"},
            {"role": "assistant", "content": "heard 1: my name is Ada"},
            {"role": "user", "content": "what is my name?"},
        ]
        assert len(model.requests) == 2  # each turn asked the model once


async def test_a_turn_streamed_through_a_replica_that_does_not_own_it(
    tmp_path: Path, etcd_session: Any, model: FakeOpenAI
) -> None:
    """SendStream and DispatchStream on the other replica: the owner's deltas come over
    the forward stream, before the receipt, as they would on the owner itself; and a
    ticket's WatchTurn there relays the owner's, progress included."""
    async with two_replicas(tmp_path, etcd_session, model) as (_, channels):
        [status] = await all_statuses(channels[0])
        other = channels[1] if Holder(status.owner).instance == "a" else channels[0]
        model.script(Say("told from afar", chunks=4), Say("and again", chunks=3))
        for request, rpc in (
            (svc.SendStreamRequest(identity="alice", input=text_input("a story")), "Send"),
            (svc.DispatchStreamRequest(identity="alice", input=text_input("more")), "Dispatch"),
        ):
            call = getattr(stub(other), f"{rpc}Stream")(request, timeout=20)
            items = [item async for item in call]
            *progress, last = items
            assert last.HasField("receipt"), rpc
            deltas = [i.progress.text_delta.text for i in progress]
            assert all(i.HasField("progress") for i in progress)
            assert len(deltas) >= 2 and "".join(deltas) == last.receipt.output, rpc
        assert len(model.requests) == 2  # each turn asked the model once, on its owner

        # A ticket watched through the other replica: the owner's watch, relayed.
        model.script(Slow(1.0, Say("worth the wait", chunks=4)))
        submit = svc.SubmitTurnRequest(identity="alice", input=text_input("slowly"))
        turn = (await stub(other).SubmitTurn(submit, timeout=20)).turn
        assert turn.state == svc.TURN_STATE_PENDING, turn
        watch = svc.WatchTurnRequest(turn_id=turn.turn_id, progress=True)
        *progress, last = [item async for item in stub(other).WatchTurn(watch, timeout=20)]
        assert last.turn.state == svc.TURN_STATE_SUCCEEDED, last
        deltas = [i.progress.text_delta.text for i in progress]
        assert len(deltas) >= 2 and "".join(deltas) == last.turn.receipt.output
