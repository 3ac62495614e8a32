"""FlowService on real servers and a real etcd: a 3-step DAG with a fan-out of 3 runs to
completion with outputs passed between steps, WatchRun streams its events then the run,
and each documented ending (schema, too few targets, cancel) is what GetRun reports."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from mobkit.gen.flows.v1 import flows_pb2 as pb
from mobkit.gen.flows.v1 import flows_service_pb2 as fsvc
from mobkit.gen.flows.v1 import flows_service_pb2_grpc as fgrpc
from mobkit.testing.fleet import wait_fleet
from mobkit.testing.servers import running_services
from mobkit.testing.suite import reason

ROSTER = """
[profiles]
lead = "notebook"
worker = "echo"

[[agents]]
identity = "lead"
profile = "lead"

[[agents]]
identity = "w1"
profile = "worker"
labels = { role = "worker" }

[[agents]]
identity = "w2"
profile = "worker"
labels = { role = "worker" }

[[agents]]
identity = "w3"
profile = "worker"
labels = { role = "worker" }
addressability = "internal_only"

[[flows]]
flow_id = "ask"
[flows.input_schema]
type = "object"
required = ["q"]

[[flows.steps]]
step_id = "frame"
identity = "lead"
input = "remember {{ input.q }}"

[[flows.steps]]
step_id = "answer"
depends_on = ["frame"]
fan_out = { labels = { role = "worker" }, min_targets = 3 }
input = "answer: {{ input.q }}"

[[flows.steps]]
step_id = "sum"
depends_on = ["answer"]
identity = "lead"
input = "remember {{ steps.answer.output | join(' + ') }}"

[[flows]]
flow_id = "strict"
[[flows.steps]]
step_id = "only"
identity = "w1"
output_schema = { type = "object", required = ["n"] }

[[flows]]
flow_id = "crowd"
[[flows.steps]]
step_id = "all"
fan_out = { labels = { role = "worker" }, min_targets = 4 }
"""


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "roster.toml"


def flows(channel: grpc.aio.Channel) -> fgrpc.FlowServiceStub:
    return fgrpc.FlowServiceStub(channel)


async def watch(channel: grpc.aio.Channel, run_id: str) -> tuple[list[Any], pb.Run]:
    events, final = [], None
    async for item in flows(channel).WatchRun(fsvc.WatchRunRequest(run_id=run_id), timeout=60):
        if item.HasField("event"):
            events.append(item.event)
        else:
            final = item.run
    assert final is not None
    return events, final


@pytest.fixture
def roster(tmp_path: Path) -> Path:
    path = tmp_path / "roster.toml"
    path.write_text(ROSTER)
    return path


async def test_flows_run_end_to_end(tmp_path: Path, etcd_session: Any, roster: Path) -> None:
    async with running_services(
        ["all"],
        etcd_endpoints=[etcd_session.endpoint],
        etcd_prefix=f"/flows-{uuid.uuid4().hex[:8]}",
        roster=str(roster),
        data_dir=str(tmp_path),
        continuity_backend="sqlite",
    ) as (_server, channel, _):
        await wait_fleet(channel, 4, owners=1, timeout=30)
        listed = await flows(channel).ListFlows(fsvc.ListFlowsRequest(), timeout=10)
        assert [f.flow_id for f in listed.flows] == ["ask", "strict", "crowd"]
        assert listed.flows[0].steps[1].fan_out.min_targets == 3

        start = fsvc.StartRunRequest(flow_id="ask", input_json='{"q": "why"}', request_id="r-1")
        run = (await flows(channel).StartRun(start, timeout=10)).run
        again = (await flows(channel).StartRun(start, timeout=10)).run
        assert again.run_id == run.run_id
        events, final = await watch(channel, run.run_id)
        assert final.state == pb.RUN_STATE_SUCCEEDED, final
        steps = {s.step_id: s for s in final.steps}
        answers = {r.identity: r.output for r in steps["answer"].results}
        assert answers == {"w1": "answer: why", "w2": "answer: why", "w3": "answer: why"}
        assert steps["sum"].message == "remember answer: why + answer: why + answer: why"
        kinds = [e.kind for e in events]
        assert kinds[0] == "run_started" and kinds[-1] == "run_succeeded"
        assert kinds.count("step_turn_done") == 5
        got = (await flows(channel).GetRun(fsvc.GetRunRequest(run_id=run.run_id), timeout=10)).run
        assert got == final

        # The documented endings.
        strict = await flows(channel).StartRun(
            fsvc.StartRunRequest(flow_id="strict", input_json='"hello"'), timeout=10
        )
        _, failed = await watch(channel, strict.run.run_id)
        assert failed.state == pb.RUN_STATE_FAILED
        assert failed.failure.reason == "SCHEMA_VALIDATION" and failed.failure.step_id == "only"
        assert "'hello' is not of type 'object'" in failed.failure.message

        crowd = await flows(channel).StartRun(fsvc.StartRunRequest(flow_id="crowd"), timeout=10)
        _, short = await watch(channel, crowd.run.run_id)
        assert short.failure.reason == "INSUFFICIENT_TARGETS"
        assert short.failure.message == (
            "insufficient targets for step 'all': required 4, available 3"
        )

        listed_runs = await flows(channel).ListRuns(
            fsvc.ListRunsRequest(states=[pb.RUN_STATE_FAILED], page_size=1), timeout=10
        )
        assert [r.flow_id for r in listed_runs.runs] == ["strict"]
        rest = await flows(channel).ListRuns(
            fsvc.ListRunsRequest(
                states=[pb.RUN_STATE_FAILED], page_size=1, page_token=listed_runs.next_page_token
            ),
            timeout=10,
        )
        assert [r.flow_id for r in rest.runs] == ["crowd"]

        # Bad input: clear reasons, nothing stored.
        bad = [
            (fsvc.StartRunRequest(flow_id="nope"), "FLOW_NOT_FOUND", grpc.StatusCode.NOT_FOUND),
            (
                fsvc.StartRunRequest(flow_id="ask", input_json='{"x": 1}'),
                "INVALID_ARGUMENT",
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (
                fsvc.StartRunRequest(flow_id="ask", input_json="{nope"),
                "INVALID_ARGUMENT",
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (
                fsvc.StartRunRequest(
                    flow_id="ask", input_json='{"q": "why"}', expected_roster_revision=999
                ),
                "SPEC_REVISION_CONFLICT",
                grpc.StatusCode.ABORTED,
            ),
        ]
        before = await flows(channel).ListRuns(fsvc.ListRunsRequest(), timeout=10)
        for request, expected, code in bad:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await flows(channel).StartRun(request, timeout=10)
            assert (refused.value.code(), reason(refused.value)) == (code, expected)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await flows(channel).GetRun(fsvc.GetRunRequest(run_id="no-such"), timeout=10)
        assert reason(missing.value) == "RUN_NOT_FOUND"
        after = await flows(channel).ListRuns(fsvc.ListRunsRequest(), timeout=10)
        assert after == before
        assert json.loads(final.input_json) == {"q": "why"}


EDITED = """
[profiles]
notebook = "notebook"

[[agents]]
identity = "n1"
profile = "notebook"

[[flows]]
flow_id = "note"
[[flows.steps]]
step_id = "write"
identity = "n1"
input = "remember VERSION {{ input }}"
retry = { max_attempts = 100, initial_backoff_seconds = 0.2, max_backoff_seconds = 0.5 }
timeout_seconds = 2
"""


async def test_a_roster_edit_during_a_run_applies_to_new_runs_only(
    tmp_path: Path, etcd_session: Any
) -> None:
    from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
    from mobkit.testing.suite import stub, text_input, until

    path = tmp_path / "roster.toml"
    path.write_text(EDITED.replace("VERSION", "v1"))
    async with running_services(
        ["all"],
        etcd_endpoints=[etcd_session.endpoint],
        etcd_prefix=f"/flows-edit-{uuid.uuid4().hex[:8]}",
        roster=str(path),
        data_dir=str(tmp_path),
        continuity_backend="sqlite",
    ) as (_server, channel, _):
        await wait_fleet(channel, 1, owners=1, timeout=30)
        await stub(channel).SuspendIdentity(svc.SuspendIdentityRequest(identity="n1"), timeout=10)
        first = (
            await flows(channel).StartRun(
                fsvc.StartRunRequest(flow_id="note", input_json='"a"'), timeout=10
            )
        ).run
        doomed = (
            await flows(channel).StartRun(
                fsvc.StartRunRequest(flow_id="note", input_json='"c"'), timeout=10
            )
        ).run
        path.write_text(EDITED.replace("VERSION", "v2"))

        async def edited() -> bool:
            listed = await flows(channel).ListFlows(fsvc.ListFlowsRequest(), timeout=10)
            return "v2" in listed.flows[0].steps[0].input_template

        await until(edited, "the roster edit picked up", 30)
        # A cancel while the step keeps retrying: the run ends Canceled, no turn ran.
        await flows(channel).CancelRun(fsvc.CancelRunRequest(run_id=doomed.run_id), timeout=10)
        _, canceled = await watch(channel, doomed.run_id)
        assert canceled.state == pb.RUN_STATE_CANCELED
        assert canceled.failure.reason == "RUN_CANCELED"
        assert canceled.steps[0].state == pb.STEP_STATE_CANCELED
        await stub(channel).ResumeIdentity(svc.ResumeIdentityRequest(identity="n1"), timeout=10)
        second = (
            await flows(channel).StartRun(
                fsvc.StartRunRequest(flow_id="note", input_json='"b"'), timeout=10
            )
        ).run
        _, old = await watch(channel, first.run_id)
        _, new = await watch(channel, second.run_id)
        assert (old.state, new.state) == (pb.RUN_STATE_SUCCEEDED, pb.RUN_STATE_SUCCEEDED)
        assert old.steps[0].message == "remember v1 a"  # pinned at its start
        assert new.steps[0].message == "remember v2 b"
        assert old.roster_revision < new.roster_revision
        recall = await stub(channel).Send(
            svc.SendRequest(identity="n1", input=text_input("recall")), timeout=10
        )
        assert (
            "a" in recall.receipt.output and "c" not in recall.receipt.output.split("recalling")[-1]
        )


async def test_the_example_flow_runs_on_the_example_team(tmp_path: Path, etcd_session: Any) -> None:
    example = EXAMPLE
    async with running_services(
        ["all"],
        etcd_endpoints=[etcd_session.endpoint],
        etcd_prefix=f"/flows-example-{uuid.uuid4().hex[:8]}",
        roster=str(example),
        data_dir=str(tmp_path),
        continuity_backend="sqlite",
    ) as (_server, channel, _):
        await wait_fleet(channel, 4, owners=1, timeout=30)
        start = fsvc.StartRunRequest(flow_id="ask-team", input_json='{"question": "why?"}')
        run = (await flows(channel).StartRun(start, timeout=10)).run
        _, final = await watch(channel, run.run_id)
        assert final.state == pb.RUN_STATE_SUCCEEDED, final
        steps = {s.step_id: s for s in final.steps}
        assert sorted(r.identity for r in steps["answer"].results) == [
            "worker-1",
            "worker-2",
            "worker-3",
        ]
        assert steps["summarise"].message == "remember 3 workers answered why?"
