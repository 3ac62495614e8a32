"""What a turn's input must be (API.md "Input bounds"): an empty message and over-long
keys are refused with INVALID_ARGUMENT naming the field, before any turn or checkpoint."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.gen.roster.v1 import roster_pb2
from mobkit.testing.fleet import wait_fleet
from mobkit.testing.servers import running_services
from mobkit.testing.suite import reason, send_request, stub, text_input, write_roster


async def _status(channel: grpc.aio.Channel, identity: str) -> tuple[int, str]:
    reply = await stub(channel).GetIdentityStatus(
        svc.GetIdentityStatusRequest(identity=identity), timeout=5
    )
    return reply.status.checkpoint_version, reply.status.session_id


@pytest.mark.parametrize("rpc", ["Send", "Dispatch"])
async def test_empty_and_oversized_inputs_run_no_turn(
    tmp_path: Path, etcd_session: Any, rpc: str
) -> None:
    roster = write_roster(tmp_path / "roster.toml", ["scribe"])
    async with running_services(
        ["all"],
        etcd_endpoints=[etcd_session.endpoint],
        etcd_prefix=f"/input-{uuid.uuid4().hex[:8]}",
        roster=str(roster),
        data_dir=str(tmp_path),
        continuity_backend="sqlite",
    ) as (_server, channel, _):
        await wait_fleet(channel, 1, owners=1, timeout=30)
        call = getattr(stub(channel), rpc)
        make = svc.SendRequest if rpc == "Send" else svc.DispatchRequest
        await call(send_request("scribe", "first note"), timeout=10)  # a real turn works
        before = await _status(channel, "scribe")

        empty_blocks = text_input("x")
        empty_blocks.content.CopyFrom(
            roster_pb2.ContentInput(blocks=roster_pb2.ContentInput.Blocks())
        )
        long_key = text_input("note", key="k" * 257)
        long_correlation = text_input("note")
        long_correlation.correlation_id = "c" * 257
        cases = [
            (text_input(""), "input.content"),
            (svc.SendRequest().input, "input.content"),  # no content at all
            (empty_blocks, "input.content"),
            (long_key, "input.idempotency_key"),
            (long_correlation, "input.correlation_id"),
        ]
        for message, field in cases:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(make(identity="scribe", input=message), timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
            assert reason(info.value) == "INVALID_ARGUMENT"
            assert field in info.value.details()
        assert await _status(channel, "scribe") == before  # no turn, no checkpoint
