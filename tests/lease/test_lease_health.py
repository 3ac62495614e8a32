"""Health follows the backend: a service is NOT_SERVING, under its own name, while the
etcd it uses is unreachable, and SERVING again once etcd is back; a service that does
not use etcd keeps SERVING, and ``liveness`` always does."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mobkit.etcd.process import EtcdProcess
from mobkit.testing.processes import ServeProcess
from mobkit.testing.servers import running_services
from mobkit.testing.suite import until

pytestmark = pytest.mark.timeout(180)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
LEASE = "mobkit.lease.v1.LeaseService"
TOPOLOGY = "mobkit.topology.v1.TopologyService"


async def statuses(channel: grpc.aio.Channel, *names: str) -> list[int]:
    stub = health_pb2_grpc.HealthStub(channel)
    return [
        (await stub.Check(health_pb2.HealthCheckRequest(service=n), timeout=5)).status
        for n in names
    ]


async def test_serve_lease_is_not_serving_while_etcd_is_down(
    etcd: EtcdProcess, tmp_path: Path
) -> None:
    args = ["--etcd-endpoints", etcd.endpoint, "--etcd-prefix", f"/h-{uuid.uuid4().hex[:8]}"]
    with ServeProcess("lease", [*args, "--etcd-alarm-interval", "0.2"], log_dir=tmp_path) as proc:
        async with grpc.aio.insecure_channel(str(proc.address)) as channel:
            assert await statuses(channel, "", LEASE, "liveness") == [SERVING] * 3
            etcd.kill()

            async def down() -> bool:
                return await statuses(channel, "", LEASE) == [NOT_SERVING] * 2

            await until(down, "NOT_SERVING while etcd is down")
            assert await statuses(channel, "liveness") == [SERVING]
            await etcd.restart_async(graceful=False)

            async def up() -> bool:
                return await statuses(channel, "", LEASE) == [SERVING] * 2

            await until(up, "SERVING once etcd is back")
        assert f"etcd unreachable at {etcd.endpoint}" in proc.log_tail()


async def test_only_the_services_that_use_etcd_go_not_serving(etcd: EtcdProcess) -> None:
    async with running_services(
        ["lease", "topology"],
        etcd_endpoints=[etcd.endpoint],
        etcd_prefix=f"/h-{uuid.uuid4().hex[:8]}",
        etcd_alarm_interval=0.2,
    ) as (_, channel, _settings):
        assert await statuses(channel, "", LEASE, TOPOLOGY) == [SERVING] * 3
        etcd.kill()

        async def down() -> bool:
            return await statuses(channel, LEASE) == [NOT_SERVING]

        await until(down, "the lease service NOT_SERVING while etcd is down")
        assert await statuses(channel, "", TOPOLOGY) == [NOT_SERVING, SERVING]
        await etcd.restart_async(graceful=False)

        async def up() -> bool:
            return await statuses(channel, "", LEASE, TOPOLOGY) == [SERVING] * 3

        await until(up, "every service SERVING once etcd is back")
