"""An etcd member dies under steady traffic: clients see nothing but retryable UNAVAILABLE."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest

from mobkit.testing.fleet import wait_fleet
from mobkit.testing.suite import send_request, stub

pytestmark = pytest.mark.timeout(300)
IDS = [f"m{i:02d}" for i in range(24)]


async def test_member_killed_under_traffic(make_fleet: Any, etcd_cluster: Any) -> None:
    fleet = make_fleet(IDS, ttl=3.0, endpoints=",".join(etcd_cluster.endpoints))
    a, b = fleet.add(), fleet.add()
    channels = [grpc.aio.insecure_channel(r.address) for r in (a, b)]
    unexpected: list[str] = []
    retried = 0
    done = 0
    exhausted = 0  # requests still UNAVAILABLE after every retry
    stop = asyncio.Event()

    async def client(k: int) -> None:
        nonlocal retried, done, exhausted
        n = 0
        while not stop.is_set():
            identity = IDS[(k * 7 + n) % len(IDS)]
            key = f"c{k}-{n}-{uuid.uuid4().hex[:6]}"
            for _ in range(100):  # retry UNAVAILABLE with the same idempotency key
                try:
                    await stub(channels[k % 2]).Send(
                        send_request(identity, "tick", key=key), timeout=10
                    )
                    done += 1
                    break
                except grpc.aio.AioRpcError as err:
                    if err.code() != grpc.StatusCode.UNAVAILABLE:
                        unexpected.append(f"{err.code().name}: {err.details()}")
                        break
                    retried += 1
                    await asyncio.sleep(0.1)
            else:
                exhausted += 1
            n += 1

    try:
        await wait_fleet(channels[0], len(IDS), owners=2, timeout=90)
        clients = [asyncio.create_task(client(k)) for k in range(6)]
        await asyncio.sleep(2)
        before = done
        victim = await etcd_cluster.leader_index_async()
        etcd_cluster.kill(victim)  # the leader: the harder case (an election follows)
        await asyncio.sleep(8)
        stop.set()
        await asyncio.gather(*clients)
        assert unexpected == [], unexpected[:5]
        assert exhausted == 0, f"{exhausted} requests never got past UNAVAILABLE"
        assert done > before, "traffic stopped after the member died"
        # No identity is left ownerless: both replicas host the whole roster again.
        await wait_fleet(channels[0], len(IDS), owners=2, timeout=60)
    finally:
        stop.set()
        for channel in channels:
            await channel.close()
