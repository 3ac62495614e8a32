"""Lifecycle commands, peer messaging and status paging through the real servicer."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from mobkit.gen.orchestrator.v1 import orchestrator_pb2 as pb
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.testing.servers import running_services
from mobkit.testing.suite import dispatch_request, reason, send_request, stub, write_roster

TEAM = ["hub", "w1", "w2"]
S = pb.IdentityLifecycleState


@pytest.fixture
async def suite(tmp_path: Path, etcd_session: Any) -> Any:
    roster = write_roster(tmp_path / "roster.toml", TEAM)
    async with running_services(
        ["all"],
        etcd_endpoints=[etcd_session.endpoint],
        etcd_prefix=f"/life-{uuid.uuid4().hex[:8]}",
        roster=str(roster),
        data_dir=str(tmp_path),
        continuity_backend="sqlite",
        lease_ttl=3.0,
        sections={"topology": {"hubs": ["hub"]}},
    ) as (_server, channel, _):
        yield stub(channel)


async def state(o: Any, identity: str) -> Any:
    return (
        await o.GetIdentityStatus(svc.GetIdentityStatusRequest(identity=identity), timeout=5)
    ).status


async def test_suspend_resume_keeps_the_session(suite: Any) -> None:
    o = suite
    first = await o.Send(send_request("w1", "remember a"), timeout=10)
    suspended = await o.SuspendIdentity(svc.SuspendIdentityRequest(identity="w1"), timeout=5)
    assert suspended.status.state == S.IDENTITY_LIFECYCLE_STATE_SUSPENDED
    assert suspended.status.HasField("lease")  # the lease stays: no one else takes it over
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await o.Send(send_request("w1", "hello"), timeout=5)
    assert reason(info.value) == "NOT_ACTIVE"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await o.SuspendIdentity(svc.SuspendIdentityRequest(identity="w1"), timeout=5)
    assert reason(info.value) == "INVALID_TRANSITION"
    resumed = await o.ResumeIdentity(svc.ResumeIdentityRequest(identity="w1"), timeout=10)
    assert resumed.status.state == S.IDENTITY_LIFECYCLE_STATE_ACTIVE
    assert resumed.status.session_id == first.receipt.session_id
    again = await o.Send(send_request("w1", "recall"), timeout=10)
    assert again.receipt.checkpoint_version == 2 and "a" in again.receipt.output


async def test_reset_starts_a_new_generation(suite: Any) -> None:
    o = suite
    first = await o.Send(send_request("w2", "remember b"), timeout=10)
    reset = await o.ResetIdentity(svc.ResetIdentityRequest(identity="w2"), timeout=10)
    assert reset.status.generation == 1 and reset.status.checkpoint_version == 0
    assert reset.status.session_id != first.receipt.session_id
    after = await o.Send(send_request("w2", "recall"), timeout=10)
    assert after.receipt.checkpoint_version == 1
    assert "nothing yet" in after.receipt.output  # fresh state in the new generation


async def test_retire_releases_and_resume_brings_back(suite: Any) -> None:
    o = suite
    await o.Send(send_request("w2", "remember c"), timeout=10)
    retired = await o.RetireIdentity(svc.RetireIdentityRequest(identity="w2"), timeout=10)
    assert retired.status.state == S.IDENTITY_LIFECYCLE_STATE_DORMANT
    assert not retired.status.HasField("lease")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await o.Dispatch(dispatch_request("w2", "hi"), timeout=5)
    assert reason(info.value) == "NOT_ACTIVE"
    # The record was kept: resuming continues the same session where it stopped.
    back = await o.ResumeIdentity(svc.ResumeIdentityRequest(identity="w2"), timeout=10)
    assert back.status.state == S.IDENTITY_LIFECYCLE_STATE_ACTIVE
    recall = await o.Send(send_request("w2", "recall"), timeout=10)
    assert "c" in recall.receipt.output and recall.receipt.checkpoint_version == 2


async def test_peer_messages_follow_the_topology(suite: Any) -> None:
    o = suite
    reply = await o.Send(send_request("hub", "ask w1 hello"), timeout=10)
    assert "w1 said" in reply.receipt.output
    assert (await state(o, "w1")).checkpoint_version == 1  # the peer's turn was checkpointed
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await o.Send(send_request("w1", "ask w2 hello"), timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason(info.value) == "TOPOLOGY_VIOLATION"
    assert (await state(o, "w1")).checkpoint_version == 1  # the refused turn left no trace


async def test_status_pages_and_filters(suite: Any) -> None:
    o = suite
    seen, token = [], ""
    while True:
        page = await o.ListIdentityStatuses(
            svc.ListIdentityStatusesRequest(page_size=2, page_token=token), timeout=5
        )
        seen += [s.identity for s in page.statuses]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(TEAM)
    await o.SuspendIdentity(svc.SuspendIdentityRequest(identity="hub"), timeout=5)
    only = await o.ListIdentityStatuses(
        svc.ListIdentityStatusesRequest(state=S.IDENTITY_LIFECYCLE_STATE_SUSPENDED), timeout=5
    )
    assert [s.identity for s in only.statuses] == ["hub"]
    topology = await o.GetTopology(svc.GetTopologyRequest(), timeout=5)
    assert {(e.a, e.b) for e in topology.edges} == {("hub", "w1"), ("hub", "w2")}


async def test_watch_events_catches_up_then_tails(suite: Any) -> None:
    o = suite
    listed = await o.ListEvents(svc.ListEventsRequest(after_seq=0, page_size=1000), timeout=5)
    start = listed.events[0].cursor - 1 if listed.events else 0
    stream = o.WatchEvents(svc.WatchEventsRequest(after_seq=start), timeout=20)
    got: list[Any] = []

    async def read() -> None:
        async for item in stream:
            got.append(item.structural)
            if item.structural.kind == "turn_completed":
                return

    reader = asyncio.ensure_future(read())
    await o.Send(send_request("w1", "live"), timeout=10)
    await asyncio.wait_for(reader, 15)
    stream.cancel()
    cursors = [e.cursor for e in got]
    assert cursors == sorted(set(cursors))
    assert [e.cursor for e in got[: len(listed.events)]] == [e.cursor for e in listed.events]
