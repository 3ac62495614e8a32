"""Every metric the README lists, read over HTTP from ``/metrics`` of a real suite
(``mobkit serve all`` on etcd and SQLite) after real turns, and again after a retire."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import grpc
from metrics_support import scrape, value

from mobkit.etcd.process import EtcdProcess, free_ports
from mobkit.gen.orchestrator.v1 import orchestrator_pb2 as pb
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.testing.suite import send_request, stub, suite_process, write_roster

ORCHESTRATOR = "mobkit.orchestrator.v1.OrchestratorService"
TURNS = {"alice": 3, "bob": 2}
ACTIVE = pb.IDENTITY_LIFECYCLE_STATE_ACTIVE


async def wait_active(channel: grpc.aio.Channel, want: set[str], timeout: float = 40) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        with contextlib.suppress(grpc.aio.AioRpcError):
            reply = await stub(channel).ListIdentityStatuses(
                svc.ListIdentityStatusesRequest(), timeout=5
            )
            if {s.identity for s in reply.statuses if s.state == ACTIVE} == want:
                return
        assert loop.time() < deadline, f"{sorted(want)} never became active"
        await asyncio.sleep(0.1)


async def test_every_listed_metric_follows_real_turns(
    tmp_path: Path, etcd_session: EtcdProcess
) -> None:
    (port,) = free_ports(1)
    roster = write_roster(tmp_path / "roster.toml", sorted(TURNS))
    proc = suite_process(
        tmp_path,
        etcd_session.endpoint,
        roster,
        prefix=f"/metrics-{uuid.uuid4().hex[:8]}",
        extra=["--metrics-listen", f"127.0.0.1:{port}"],
    )
    with proc:
        async with grpc.aio.insecure_channel(proc.address or "") as channel:
            await wait_active(channel, set(TURNS))
            for identity, turns in TURNS.items():
                for n in range(turns):
                    await stub(channel).Send(send_request(identity, f"note {n}"), timeout=10)

            _, body = await scrape(port)
            assert value(body, "mobkit_leases_held") == 2
            assert value(body, "mobkit_identities_by_state", state="active") == 2
            assert value(body, "mobkit_identities_by_state", state="dormant") == 0
            assert value(body, "mobkit_checkpoint_saves_total", result="ok") == 5
            send = {"grpc_service": ORCHESTRATOR, "grpc_method": "Send"}
            assert value(body, "grpc_server_handled_total", grpc_code="OK", **send) == 5
            assert value(body, "grpc_server_handling_seconds_count", **send) == 5
            assert value(body, "mobkit_etcd_round_trips_total") > 0
            assert value(body, "mobkit_backend_full", backend="etcd") == 0

            # A retire releases the lease and closes the session: the census follows.
            await stub(channel).RetireIdentity(
                svc.RetireIdentityRequest(identity="bob"), timeout=10
            )
            _, body = await scrape(port)
            assert value(body, "mobkit_leases_held") == 1
            assert value(body, "mobkit_identities_by_state", state="active") == 1
            assert value(body, "mobkit_identities_by_state", state="dormant") == 1
            assert value(body, "mobkit_checkpoint_saves_total", result="ok") == 5
            retire: dict[str, Any] = {"grpc_service": ORCHESTRATOR, "grpc_method": "RetireIdentity"}
            assert value(body, "grpc_server_handled_total", grpc_code="OK", **retire) == 1
