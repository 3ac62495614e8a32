"""Flows over `llm` agents on real servers, against a loopback Chat Completions server:
a step's reply feeds the next step, and a reply slower than the step's timeout ends
the run FLOW_TURN_TIMED_OUT."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_flow_service import flows, watch

from mobkit.gen.flows.v1 import flows_pb2 as pb
from mobkit.gen.flows.v1 import flows_service_pb2 as fsvc
from mobkit.testing.fake_openai import FakeOpenAI, Say, Slow
from mobkit.testing.fleet import wait_fleet
from mobkit.testing.servers import running_services

pytestmark = pytest.mark.timeout(180)

ROSTER = """
[profiles]
llm = "llm"

[[agents]]
identity = "sage"
profile = "llm"

[[flows]]
flow_id = "think"
[[flows.steps]]
step_id = "idea"
identity = "sage"
input = "An idea about {{ input }}"
timeout_seconds = 1
[[flows.steps]]
step_id = "critique"
depends_on = ["idea"]
identity = "sage"
input = "Critique: {{ steps.idea.output }}"
"""


@pytest.fixture
def model() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


async def test_llm_steps_chain_and_a_slow_reply_times_out(
    tmp_path: Path, etcd_session: Any, model: FakeOpenAI
) -> None:
    roster = tmp_path / "roster.toml"
    roster.write_text(ROSTER)
    async with running_services(
        ["all"],
        etcd_endpoints=[etcd_session.endpoint],
        etcd_prefix=f"/flows-llm-{uuid.uuid4().hex[:8]}",
        roster=str(roster),
        data_dir=str(tmp_path),
        continuity_backend="sqlite",
        sections={"llm": {"base_url": model.base_url, "model": "tiny", "max_retries": 0}},
    ) as (_server, channel, _):
        await wait_fleet(channel, 1, owners=1, timeout=30)
        model.script(Say("bees"), Say("too few bees"))
        run = (
            await flows(channel).StartRun(
                fsvc.StartRunRequest(flow_id="think", input_json='"honey"'), timeout=10
            )
        ).run
        _, final = await watch(channel, run.run_id)
        assert final.state == pb.RUN_STATE_SUCCEEDED, final
        steps = {s.step_id: s for s in final.steps}
        assert steps["critique"].message == "Critique: bees"
        assert steps["critique"].results[0].output == "too few bees"
        sent = [m["content"] for m in model.requests[-1]["messages"] if m["role"] == "user"]
        assert sent[-1] == "Critique: bees"  # the model saw the step's rendered input

        model.script(Slow(5.0))
        slow = (
            await flows(channel).StartRun(
                fsvc.StartRunRequest(flow_id="think", input_json='"tea"'), timeout=10
            )
        ).run
        _, timed_out = await watch(channel, slow.run_id)
        assert timed_out.state == pb.RUN_STATE_FAILED
        assert timed_out.failure.reason == "FLOW_TURN_TIMED_OUT"
        assert timed_out.failure.message == (
            "step 'idea': the turn on 'sage' did not finish within 1 s"
        )
