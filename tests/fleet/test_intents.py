"""Operator commands in a fleet: any replica takes them, the owner runs them, and a
suspend or retire outlives the replica that carried it out."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from mobkit.gen.orchestrator.v1 import orchestrator_pb2 as pb
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.testing.fleet import ACTIVE, all_statuses, wait_fleet
from mobkit.testing.suite import reason, send_request, stub

IDS = [f"op-{i:02d}" for i in range(12)]
SUSPENDED = pb.IDENTITY_LIFECYCLE_STATE_SUSPENDED

pytestmark = pytest.mark.timeout(180)


async def test_suspend_and_retire_survive_the_owner(make_fleet: Any) -> None:
    fleet = make_fleet(IDS, ttl=2.0)
    a, b = fleet.add("r0"), fleet.add("r1")
    ca, cb = grpc.aio.insecure_channel(a.address), grpc.aio.insecure_channel(b.address)
    try:
        await wait_fleet(ca, len(IDS), owners=2, timeout=60)
        on_a = sorted(s.identity for s in await all_statuses(ca) if s.owner.startswith("r0~"))
        paused, retired = on_a[0], on_a[1]
        first = await stub(cb).Send(send_request(paused, "remember x"), timeout=10)
        assert first.receipt.checkpoint_version == 1

        # Sent to the replica that does not own them: run by the owner.
        reply = await stub(cb).SuspendIdentity(
            svc.SuspendIdentityRequest(identity=paused), timeout=10
        )
        assert reply.status.state == SUSPENDED and reply.status.owner.startswith("r0~")
        reply = await stub(cb).RetireIdentity(
            svc.RetireIdentityRequest(identity=retired), timeout=10
        )
        assert reply.status.state != ACTIVE and not reply.status.HasField("owner")

        # Its lease released, the retired identity is claimed by no one.
        await asyncio.sleep(2 * fleet.ttl)
        statuses = {s.identity: s for s in await all_statuses(cb)}
        assert statuses[retired].state != ACTIVE and not statuses[retired].HasField("owner")

        a.kill()  # the owner of both dies; the survivor claims everything else
        await wait_fleet(cb, len(IDS) - 2, owners=1, timeout=fleet.ttl + 30)
        statuses = {s.identity: s for s in await all_statuses(cb)}
        assert statuses[paused].state == SUSPENDED and not statuses[paused].HasField("owner")
        assert statuses[retired].state != ACTIVE and not statuses[retired].HasField("owner")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub(cb).Send(send_request(paused, "hello"), timeout=10)
        assert reason(info.value) == "NOT_ACTIVE"

        # Resumed by an operator: the survivor takes it, from its last checkpoint.
        for identity in (paused, retired):
            reply = await stub(cb).ResumeIdentity(
                svc.ResumeIdentityRequest(identity=identity), timeout=15
            )
            assert reply.status.state == ACTIVE and reply.status.owner.startswith("r1~")
        again = await stub(cb).Send(send_request(paused, "recall"), timeout=10)
        assert again.receipt.checkpoint_version == 2
        assert "x" in again.receipt.output
    finally:
        await ca.close()
        await cb.close()


async def test_reset_through_any_replica_deduplicates_its_request_id(make_fleet: Any) -> None:
    fleet = make_fleet(IDS[:4], ttl=2.0)
    a, b = fleet.add("r0"), fleet.add("r1")
    ca, cb = grpc.aio.insecure_channel(a.address), grpc.aio.insecure_channel(b.address)
    try:
        await wait_fleet(ca, 4, owners=2, timeout=60)
        target = next(s.identity for s in await all_statuses(ca) if s.owner.startswith("r0~"))
        request = svc.ResetIdentityRequest(identity=target, request_id="reset-1")
        first = await stub(cb).ResetIdentity(request, timeout=10)
        retry = await stub(cb).ResetIdentity(request, timeout=10)
        assert first.status.owner.startswith("r0~")
        assert first.status.generation == retry.status.generation == 1
        assert first.status.session_id == retry.status.session_id
        other = await stub(ca).ResetIdentity(
            svc.ResetIdentityRequest(identity=target, request_id="reset-2"), timeout=10
        )
        assert other.status.generation == 2
        # The owner's refusal comes back through the forwarding replica unchanged.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub(cb).ResumeIdentity(svc.ResumeIdentityRequest(identity=target), timeout=10)
        assert reason(info.value) == "INVALID_TRANSITION"
    finally:
        await ca.close()
        await cb.close()
