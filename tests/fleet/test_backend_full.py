"""etcd out of space, end to end: two real replicas (`mobkit serve all`, etcd
continuity) on an etcd with a 16 MiB quota take turns until etcd raises NOSPACE.
Then writes fail BACKEND_FULL (RESOURCE_EXHAUSTED with its ErrorInfo), health is
NOT_SERVING (liveness stays SERVING), `mobkit status` says etcd is out of space and
`mobkit_backend_full{backend="etcd"}` is 1. `mobkit etcd recover` (compact,
defragment, disarm) brings the fleet back by itself: every identity Active again,
every acknowledged turn still in its state, and the events say what happened."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mobkit.etcd.client import EtcdClient
from mobkit.etcd.errors import EtcdNoSpace
from mobkit.etcd.process import EtcdProcess, free_ports
from mobkit.gen.lease.v1 import lease_service_pb2 as lease_pb
from mobkit.gen.lease.v1 import lease_service_pb2_grpc as lease_grpc
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.testing.fleet import Fleet, wait_fleet
from mobkit.testing.suite import eventually, reason, send_request, stub, until, write_roster

pytestmark = pytest.mark.timeout(420)

IDS = [f"note-{i}" for i in range(8)]
QUOTA = 16 * 1024**2
PAYLOAD = 64 * 1024  # per note: 12 notes keep a snapshot well under 1 MiB
MAX_ROUNDS = 12
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def small_etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    proc = EtcdProcess(tmp_path / "etcd", unsafe_no_fsync=True, quota_backend_bytes=QUOTA)
    proc.start()
    try:
        yield proc
    finally:
        proc.kill()


def note(identity: str, n: int) -> str:
    tag = f"{identity}#{n}"
    # Incompressible enough that neither etcd nor a chunking store shrinks it.
    filler = os.urandom(PAYLOAD // 2).hex()
    return f"remember {tag} {filler}"


def mobkit(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mobkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def metric(port: int) -> float | None:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in body.splitlines():
        if line.startswith('mobkit_backend_full{backend="etcd"}'):
            return float(line.rsplit(" ", 1)[1])
    return None


async def health(channel: grpc.aio.Channel, service: str = "") -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5
    )
    return int(reply.status)


async def test_etcd_full_is_loud_and_the_fleet_recovers_by_itself(
    tmp_path: Path, small_etcd: EtcdProcess
) -> None:
    roster = write_roster(tmp_path / "roster.toml", IDS)
    fleet = Fleet(tmp_path, small_etcd.endpoint, roster, ttl=3.0)
    ports = free_ports(2)
    try:
        replicas = [
            fleet.add(
                extra=["--etcd-alarm-interval", "0.5", "--metrics-listen", f"127.0.0.1:{port}"]
            )
            for port in ports
        ]
        channels = [grpc.aio.insecure_channel(r.address or "") for r in replicas]
        await wait_fleet(channels[0], len(IDS), owners=2, timeout=120)
        orchestrator = stub(channels[0])

        # -- turns until etcd is full --------------------------------------------------
        acknowledged: dict[str, list[str]] = {i: [] for i in IDS}
        failure: grpc.aio.AioRpcError | None = None
        for n in range(MAX_ROUNDS):
            for identity in IDS:
                try:
                    await orchestrator.Send(send_request(identity, note(identity, n)), timeout=30)
                    acknowledged[identity].append(f"{identity}#{n}")
                except grpc.aio.AioRpcError as err:
                    failure = err
                    break
            if failure is not None:
                break
        if failure is None:
            # A store that writes only what changed fills etcd more slowly than these
            # turns can: top it up, as any other tenant of the cluster might.
            ballast = await EtcdClient.connect([small_etcd.endpoint], timeout=10)
            try:
                with pytest.raises(EtcdNoSpace):
                    for k in range(4 * QUOTA // 1_000_000):
                        await ballast.put(f"/ballast/{k}", os.urandom(1_000_000))
            finally:
                await ballast.close()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await orchestrator.Send(send_request(IDS[0], note(IDS[0], 99)), timeout=30)
            failure = info.value
        assert failure.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, failure
        assert reason(failure) == "BACKEND_FULL", failure.details()
        assert sum(map(len, acknowledged.values())) > 0

        # The lease service refuses a new holder the same way (its etcd lease is a write).
        with pytest.raises(grpc.aio.AioRpcError) as lease_err:
            await lease_grpc.LeaseServiceStub(channels[1]).AcquireLeases(
                lease_pb.AcquireLeasesRequest(
                    identities=["probe"], runtime_instance="probe-holder", ttl={"seconds": 5}
                ),
                timeout=10,
            )
        assert lease_err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert reason(lease_err.value) == "BACKEND_FULL"

        # -- loud: health, status, metric -----------------------------------------------
        async def all_health(service: str = "") -> list[int]:
            return [await health(c, service) for c in channels]

        async def not_serving() -> bool:
            return SERVING not in await all_health()

        await until(not_serving, "health NOT_SERVING on both replicas", timeout=60)
        assert await all_health("liveness") == [SERVING, SERVING]
        status = await asyncio.to_thread(mobkit, "status", "--addr", replicas[0].address or "")
        assert status.returncode == 0, status.stderr
        assert "etcd is out of space" in status.stderr and "BACKEND_FULL" in status.stderr
        assert [metric(p) for p in ports] == [1.0, 1.0]

        # -- recover: free space, compact, defragment, disarm ---------------------------
        cleaner = await EtcdClient.connect([small_etcd.endpoint], timeout=10)
        try:
            await cleaner.delete_prefix("/ballast/")
        finally:
            await cleaner.close()
        recover = await asyncio.to_thread(
            mobkit, "etcd", "recover", "--etcd-endpoints", small_etcd.endpoint
        )
        assert recover.returncode == 0, recover.stderr
        assert "compacted etcd at revision" in recover.stdout
        assert "disarmed NOSPACE" in recover.stdout

        # -- the fleet comes back by itself ---------------------------------------------
        async def serving_again() -> bool:
            return await all_health() == [SERVING, SERVING]

        await until(serving_again, "health SERVING again on both replicas", timeout=60)
        await wait_fleet(channels[1], len(IDS), owners=2, timeout=120)
        await eventually(lambda: [metric(p) for p in ports] == [0.0, 0.0], what="metric 0")
        status = await asyncio.to_thread(mobkit, "status", "--addr", replicas[1].address or "")
        assert status.returncode == 0 and "out of space" not in status.stderr, status.stderr

        # Nothing acknowledged was lost: each identity still holds every note it
        # confirmed, and takes new turns.
        for identity in IDS:
            reply = await stub(channels[1]).Send(send_request(identity, "recall"), timeout=30)
            memory = reply.receipt.output
            missing = [t for t in acknowledged[identity] if f"{t} " not in memory]
            assert not missing, (identity, missing)

        # The events say what happened, in order.
        seen: list[tuple[str, str]] = []  # (replica, kind), in log order

        async def recorded() -> bool:
            seen.clear()
            token = ""
            while True:
                reply = await orchestrator.ListEvents(
                    svc.ListEventsRequest(page_size=1000, page_token=token), timeout=10
                )
                seen.extend(
                    (e.data["replica"], e.kind)
                    for e in reply.events
                    if e.kind in ("backend_full", "backend_recovered")
                )
                token = reply.next_page_token
                if not token:
                    return sum(k == "backend_recovered" for _, k in seen) == len(replicas)

        await until(recorded, "backend_full and backend_recovered events", timeout=60)
        # Each replica said so: full first, then recovered.
        by_replica: dict[str, list[str]] = {}
        for replica, kind in seen:
            by_replica.setdefault(replica, []).append(kind)
        assert len(by_replica) == len(replicas), seen
        assert all(k == ["backend_full", "backend_recovered"] for k in by_replica.values()), seen
        for channel in channels:
            await channel.close()
    finally:
        fleet.close()
