"""A 3-member cluster keeps serving one client through member failures."""

from __future__ import annotations

import asyncio

import pytest

from mobkit.etcd import EtcdClient, EtcdUnavailable
from mobkit.etcd.ops import compare_create_revision, put_op, range_op, txn_op, txn_request
from mobkit.testing.etcd_cluster import EtcdCluster

CLIENT_TIMEOUT = 10.0  # covers a leader election


async def _route_around_dead_member(client: EtcdClient) -> None:
    """Writes are never retried by the client (their outcome is unknown when a member
    dies under them), so one routed to the dead member before its connection was seen
    closed fails with EtcdUnavailable. Past that, the channel must avoid the member."""
    async with asyncio.timeout(CLIENT_TIMEOUT):
        for i in range(3):
            while True:
                try:
                    await client.put(f"/c/probe/{i}", "x")
                    break
                except EtcdUnavailable:
                    continue


async def _writes_work(client: EtcdClient, tag: str) -> None:
    for i in range(10):
        await client.put(f"/c/{tag}/{i}", str(i))
    keys = [f"/c/{tag}/lease/{i}" for i in range(8)]
    reply = await client.txn(
        txn_request(
            success=[
                txn_op([compare_create_revision(k, "=", 0)], [put_op(k, tag)], [range_op(k)])
                for k in keys
            ]
        )
    )
    assert all(r.response_txn.succeeded for r in reply.responses)
    for i in range(10):
        kv = await client.get(f"/c/{tag}/{i}")
        assert kv is not None and kv.value == str(i).encode()


@pytest.mark.parametrize("victim", ["leader", "follower"])
async def test_client_survives_member_kill(etcd_cluster: EtcdCluster, victim: str) -> None:
    async with await EtcdClient.connect(etcd_cluster.endpoints, timeout=CLIENT_TIMEOUT) as client:
        await _writes_work(client, "before")
        leader = await etcd_cluster.leader_index_async()
        index = leader if victim == "leader" else (leader + 1) % 3
        etcd_cluster.kill(index)
        if victim == "leader":
            # Writes proposed before the followers notice may time out (etcd's own
            # behaviour, surfaced as EtcdUnavailable); once re-elected, all succeed.
            assert await etcd_cluster.leader_index_async() != index
        await _route_around_dead_member(client)
        await _writes_work(client, "after")
        members = await client.member_list()
        assert len(members.members) == 3

        await etcd_cluster.restart_async(index)
        # The restarted member rejoined: a linearizable read served through it alone
        # waits until it has applied everything committed meanwhile.
        async with await EtcdClient.connect(
            [etcd_cluster[index].endpoint], timeout=CLIENT_TIMEOUT
        ) as alone:
            kv = await alone.get("/c/after/9")
        assert kv is not None and kv.value == b"9"
