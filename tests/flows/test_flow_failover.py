"""Flow runs across real replica processes on one etcd: the run's owner SIGKILLed while
a fan-out step is half done, and SIGSTOPped past its lease TTL then resumed.

A suspended worker holds the fan-out half done (its attempts fail NOT_ACTIVE and are
retried) for as long as the test needs, whatever the machine's speed; resuming it lets
the step finish on whichever replica owns the run by then."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from mobkit.core.keyspace import run_lease_identity
from mobkit.gen.flows.v1 import flows_pb2 as pb
from mobkit.gen.flows.v1 import flows_service_pb2 as fsvc
from mobkit.gen.flows.v1 import flows_service_pb2_grpc as fgrpc
from mobkit.gen.lease.v1 import lease_service_pb2 as lsvc
from mobkit.gen.lease.v1 import lease_service_pb2_grpc as lgrpc
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.testing.fleet import Fleet, wait_fleet
from mobkit.testing.processes import ServeProcess
from mobkit.testing.suite import send_request, stub, until

pytestmark = pytest.mark.timeout(240)
WORKERS = ["w1", "w2", "w3", "w4"]
ROSTER = (
    '[profiles]\nnotebook = "notebook"\n'
    + "".join(
        f'[[agents]]\nidentity = "{i}"\nprofile = "notebook"\nlabels = {{ role = "worker" }}\n'
        for i in WORKERS
    )
    + '[[agents]]\nidentity = "lead"\nprofile = "notebook"\n'
    + """
[[flows]]
flow_id = "gather"
[[flows.steps]]
step_id = "frame"
identity = "lead"
input = "remember framed {{ input.q }}"
[[flows.steps]]
step_id = "answer"
depends_on = ["frame"]
fan_out = { labels = { role = "worker" }, min_targets = 4 }
input = "remember answered {{ input.q }}"
timeout_seconds = 2
retry = { max_attempts = 100, initial_backoff_seconds = 0.2, max_backoff_seconds = 0.5 }
[[flows.steps]]
step_id = "sum"
depends_on = ["answer"]
identity = "lead"
input = "remember summed {{ input.q }}"
"""
)


def flows(channel: grpc.aio.Channel) -> fgrpc.FlowServiceStub:
    return fgrpc.FlowServiceStub(channel)


async def get_run(channel: grpc.aio.Channel, run_id: str) -> pb.Run:
    return (await flows(channel).GetRun(fsvc.GetRunRequest(run_id=run_id), timeout=10)).run


async def run_owner(channel: grpc.aio.Channel, run_id: str) -> str | None:
    reply = await lgrpc.LeaseServiceStub(channel).ListLeases(
        lsvc.ListLeasesRequest(page_size=1000), timeout=10
    )
    wanted = run_lease_identity(run_id)
    return next((lease.holder for lease in reply.leases if lease.identity == wanted), None)


async def half_done(channel: grpc.aio.Channel, run_id: str) -> pb.Run:
    """Until the fan-out has every answer but the suspended w4's, which keeps retrying."""

    async def check() -> bool:
        run = await get_run(channel, run_id)
        step = next((s for s in run.steps if s.step_id == "answer"), None)
        return (
            step is not None
            and {r.identity for r in step.results} == {"w1", "w2", "w3"}
            and step.attempts["w4"] >= 2
        )

    await until(check, "the fan-out half done", 60)
    return await get_run(channel, run_id)


async def notes(channel: grpc.aio.Channel, identity: str) -> str:
    reply = await stub(channel).Send(send_request(identity, "recall"), timeout=15)
    return reply.receipt.output


async def each_turn_ran_once(channel: grpc.aio.Channel) -> None:
    for worker in WORKERS:
        assert (await notes(channel, worker)).count("answered why") == 1, worker
    lead = await notes(channel, "lead")
    assert lead.count("framed why") == 1 and lead.count("summed why") == 1, lead


async def start_half_done(
    tmp_path: Path, etcd_session: Any
) -> tuple[Fleet, list[ServeProcess], list[grpc.aio.Channel], str, ServeProcess]:
    roster = tmp_path / "roster.toml"
    roster.write_text(ROSTER)
    fleet = Fleet(tmp_path, etcd_session.endpoint, roster, ttl=2.0)
    replicas = [fleet.add(), fleet.add()]
    channels = [grpc.aio.insecure_channel(r.address) for r in replicas]
    await wait_fleet(channels[0], 5, owners=2, timeout=90)
    await stub(channels[0]).SuspendIdentity(svc.SuspendIdentityRequest(identity="w4"), timeout=15)
    start = fsvc.StartRunRequest(flow_id="gather", input_json='{"q": "why"}', request_id="g-1")
    run_id = (await flows(channels[0]).StartRun(start, timeout=10)).run.run_id
    await half_done(channels[0], run_id)
    holder = await run_owner(channels[0], run_id)
    assert holder is not None
    owner = next(r for r in replicas if holder.startswith(f"{r.name}~"))
    return fleet, replicas, channels, run_id, owner


async def taken_over(channel: grpc.aio.Channel, name: str, run_id: str) -> None:
    async def owned() -> bool:
        holder = await run_owner(channel, run_id)
        return holder is not None and holder.startswith(f"{name}~")

    await until(owned, f"{name} owning the run", 30)


async def finish_on(channel: grpc.aio.Channel, run_id: str) -> pb.Run:
    await stub(channel).ResumeIdentity(svc.ResumeIdentityRequest(identity="w4"), timeout=30)

    async def done() -> bool:
        return (await get_run(channel, run_id)).state != pb.RUN_STATE_RUNNING

    await until(done, "the run finished on the survivor", 60)
    return await get_run(channel, run_id)


async def test_a_run_whose_owner_is_killed_mid_fan_out_completes_on_the_survivor(
    tmp_path: Path, etcd_session: Any
) -> None:
    fleet, replicas, channels, run_id, owner = await start_half_done(tmp_path, etcd_session)
    try:
        survivor = channels[1 - replicas.index(owner)]
        owner.kill()
        survivor_name = replicas[1 - replicas.index(owner)].name
        await taken_over(survivor, survivor_name, run_id)
        final = await finish_on(survivor, run_id)
        assert final.state == pb.RUN_STATE_SUCCEEDED, final
        answer = next(s for s in final.steps if s.step_id == "answer")
        assert {r.identity for r in answer.results} == set(WORKERS)
        await each_turn_ran_once(survivor)
    finally:
        for channel in channels:
            await channel.close()
        fleet.close()


async def test_an_owner_paused_past_its_ttl_cannot_advance_the_run(
    tmp_path: Path, etcd_session: Any
) -> None:
    fleet, replicas, channels, run_id, owner = await start_half_done(tmp_path, etcd_session)
    try:
        index = replicas.index(owner)
        survivor, survivor_name = channels[1 - index], replicas[1 - index].name
        owner.pause()
        await taken_over(survivor, survivor_name, run_id)
        final = await finish_on(survivor, run_id)
        assert final.state == pb.RUN_STATE_SUCCEEDED, final
        owner.resume()
        # The stale owner wakes with its old grant: its renewal is refused (Lost) or its
        # next save meets the survivor's token; either way it stops, writing nothing.
        await until(
            lambda: _logged(owner, ("lease lost; stopping its drive", "lost to another owner")),
            "the stale owner noticing it lost the run",
            30,
        )
        assert await get_run(survivor, run_id) == final
        await each_turn_ran_once(survivor)
    finally:
        for channel in channels:
            await channel.close()
        fleet.close()


async def _logged(proc: ServeProcess, lines: tuple[str, ...]) -> bool:
    text = proc.log_path.read_text(errors="replace")
    return any(line in text for line in lines)
