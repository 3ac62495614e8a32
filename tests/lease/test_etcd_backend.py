"""The etcd lease backend against real etcd: round trips, the instance's etcd lease,
replicas, partial failures, etcd restarts and a 3-member cluster losing its leader."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Literal

import pytest
import pytest_asyncio
from lease_support import WAIT, FakeClock

from mobkit.core.errors import LeaseProviderUnavailable
from mobkit.core.identity import AgentIdentity
from mobkit.core.types import Acquired, AlreadyHeld, LeaseGrant, Lost, Renewed
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.errors import EtcdUnavailable
from mobkit.etcd.ops import prefix_end
from mobkit.etcd.process import EtcdProcess
from mobkit.gen.etcd.api.etcdserverpb import rpc_pb2
from mobkit.lease.client import GrpcLeaseProvider
from mobkit.lease.etcd_backend import EtcdLeaseProvider
from mobkit.testing.etcd_cluster import EtcdCluster
from mobkit.testing.servers import running_services

TTL = timedelta(seconds=10)
A = "orch-a@127.0.0.1:7001"
B = "orch-b@127.0.0.1:7002"


def ids(n: int, stem: str = "agent") -> list[str]:
    return [f"{stem}-{i:05d}" for i in range(n)]


def grants_of(results: list) -> list[LeaseGrant]:
    assert all(isinstance(r, Acquired) for r in results), results
    return [r.grant for r in results]


@pytest_asyncio.fixture
async def client(etcd_session: EtcdProcess) -> AsyncIterator[EtcdClient]:
    async with await EtcdClient.connect([etcd_session.endpoint], timeout=5.0) as c:
        yield c


async def lease_keys(client: EtcdClient, prefix: str) -> dict[str, tuple[bytes, int, int]]:
    """identity -> (holder, create_revision, etcd lease) as stored in etcd."""
    base = prefix.rstrip("/") + "/leases/"
    reply = await client.range(base, prefix_end(base))
    return {
        kv.key.decode()[len(base) :]: (kv.value, kv.create_revision, kv.lease) for kv in reply.kvs
    }


# -- races and replicas ----------------------------------------------------------------


async def test_two_instances_race_through_two_replicas_for_1000_identities(
    etcd_session: EtcdProcess, etcd_prefix: str
) -> None:
    """Each instance talks to its own LeaseService replica; both replicas share etcd."""
    names = ids(1000)
    settings = {"etcd_endpoints": [etcd_session.endpoint], "etcd_prefix": etcd_prefix}
    async with (
        running_services(["lease"], **settings) as (_, channel_1, _s1),
        running_services(["lease"], **settings) as (_, channel_2, _s2),
    ):
        first, second = GrpcLeaseProvider(channel_1), GrpcLeaseProvider(channel_2)
        # Both connected before the race, so neither finishes before the other starts.
        await asyncio.gather(first.list_leases(1, ""), second.list_leases(1, ""))
        rng = random.Random(7)
        got_a: dict = {}
        got_b: dict = {}
        # Ten rounds of 100 contested names, each side in its own order, all at once.
        for start in range(0, len(names), 100):
            order_a, order_b = names[start : start + 100], names[start : start + 100]
            rng.shuffle(order_a)
            rng.shuffle(order_b)
            out_a, out_b = await asyncio.gather(
                first.acquire_leases(order_a, A, TTL), second.acquire_leases(order_b, B, TTL)
            )
            for got, results in ((got_a, out_a), (got_b, out_b)):
                got.update(
                    (r.grant.identity if isinstance(r, Acquired) else r.identity, r)
                    for r in results
                )

    async with await EtcdClient.connect([etcd_session.endpoint]) as raw:
        stored = await lease_keys(raw, etcd_prefix)
    assert sorted(stored) == names
    for name in names:
        a, b = got_a[name], got_b[name]
        assert isinstance(a, Acquired) != isinstance(b, Acquired), (name, a, b)
        winner, loser, loser_result = (A, B, b) if isinstance(a, Acquired) else (B, A, a)
        win = a if isinstance(a, Acquired) else b
        assert isinstance(win, Acquired)
        assert loser_result == AlreadyHeld(AgentIdentity(name), winner), loser
        assert stored[name][:2] == (winner.encode(), win.grant.fencing_token)
    wins_a = sum(isinstance(r, Acquired) for r in got_a.values())
    assert 0 < wins_a < 1000  # a real race (both made progress), not two turns


async def test_replicas_share_one_etcd_lease_per_instance(
    etcd_session: EtcdProcess, client: EtcdClient, etcd_prefix: str
) -> None:
    async with await EtcdClient.connect([etcd_session.endpoint]) as other:
        replica_1 = EtcdLeaseProvider(client, etcd_prefix)
        replica_2 = EtcdLeaseProvider(other, etcd_prefix)
        mine = grants_of(await replica_1.acquire_leases(ids(5, "one"), A, TTL))
        mine += grants_of(await replica_2.acquire_leases(ids(5, "two"), A, TTL))
        theirs = grants_of(await replica_2.acquire_leases(ids(5, "three"), B, TTL))
        stored = await lease_keys(client, etcd_prefix)
        assert len({stored[g.identity][2] for g in mine}) == 1
        assert {stored[g.identity][2] for g in theirs}.isdisjoint({stored[mine[0].identity][2]})
        # Either replica renews and releases what the other acquired.
        assert all(isinstance(r, Renewed) for r in await replica_1.renew_leases(mine))
        await replica_1.release_leases(mine[5:])
        assert await replica_2.renew_leases(mine[5:]) == [Lost(g.identity) for g in mine[5:]]


# -- round trips ---------------------------------------------------------------------------


async def test_acquire_costs_one_round_trip_per_chunk(client: EtcdClient, etcd_prefix: str) -> None:
    provider = EtcdLeaseProvider(client, etcd_prefix)
    await provider.acquire_leases(["warm-up"], A, TTL)  # opens the instance's etcd lease
    before = client.round_trips
    grants_of(await provider.acquire_leases(ids(640), A, TTL))
    assert client.round_trips - before == 10
    before = client.round_trips
    results = await provider.acquire_leases(ids(640), B, TTL)
    assert all(isinstance(r, AlreadyHeld) for r in results)
    assert client.round_trips - before == 10 + 3  # + B's lease: lookup, grant, publish


@pytest.mark.parametrize("count", [1, 64, 65, 2000])
async def test_renew_costs_constant_round_trips(
    client: EtcdClient, etcd_prefix: str, count: int
) -> None:
    provider = EtcdLeaseProvider(client, etcd_prefix)
    grants = grants_of(await provider.acquire_leases(ids(count), A, TTL))
    before = client.round_trips
    results = await provider.renew_leases(grants)
    assert all(isinstance(r, Renewed) for r in results)
    assert client.round_trips - before == 2  # one read, one keepalive


async def test_renew_of_a_sparse_batch_reads_points_and_stays_correct(
    client: EtcdClient, etcd_prefix: str
) -> None:
    """A's keys are scattered among many of B's: the interval read gives way to
    point reads, with the same answers."""
    provider = EtcdLeaseProvider(client, etcd_prefix)
    everyone = ids(3000)
    mine_ids = everyone[::30]  # 100 identities spread over 3000 keys
    mine = grants_of(await provider.acquire_leases(mine_ids, A, TTL))
    grants_of(await provider.acquire_leases([i for i in everyone if i not in mine_ids], B, TTL))
    await provider.release_leases(mine[50:51])
    before = client.round_trips
    results = await provider.renew_leases(mine)
    assert client.round_trips - before <= 4  # first page, 1 or 2 point-read txns, keepalive
    assert results[50] == Lost(mine[50].identity)
    assert all(isinstance(r, Renewed) for i, r in enumerate(results) if i != 50)


# -- the instance's etcd lease -------------------------------------------------------------


async def test_release_revokes_the_etcd_lease_once_it_holds_nothing(
    client: EtcdClient, etcd_prefix: str
) -> None:
    provider = EtcdLeaseProvider(client, etcd_prefix)
    grants = grants_of(await provider.acquire_leases(["a", "b", "c"], A, TTL))
    lease_id = (await lease_keys(client, etcd_prefix))["a"][2]
    await provider.release_leases(grants[:2])
    assert (await client.lease_time_to_live(lease_id)).TTL > 0
    await provider.release_leases(grants[2:])
    assert (await client.lease_time_to_live(lease_id)).TTL == -1
    assert (await client.range(etcd_prefix, prefix_end(etcd_prefix), count_only=True)).count == 0


async def test_a_revoked_etcd_lease_loses_everything_and_the_instance_starts_over(
    client: EtcdClient, etcd_prefix: str
) -> None:
    provider = EtcdLeaseProvider(client, etcd_prefix)
    grants = grants_of(await provider.acquire_leases(ids(10), A, TTL))
    lease_id = (await lease_keys(client, etcd_prefix))[grants[0].identity][2]
    await client.revoke_lease(lease_id)  # e.g. expired while nobody renewed
    assert await provider.renew_leases(grants) == [Lost(g.identity) for g in grants]
    again = grants_of(await provider.acquire_leases(ids(10), A, TTL))  # the cache was stale
    assert all(n.fencing_token > o.fencing_token for n, o in zip(again, grants, strict=True))
    assert all(isinstance(r, Renewed) for r in await provider.renew_leases(again))


class RevokingClient(EtcdClient):
    """Revokes an etcd lease just before keeping it alive, so its keys vanish between
    a renewal's read and its keepalive."""

    async def keepalive_once(self, lease_id: int, *, timeout: float | None = None) -> int:
        await self.revoke_lease(lease_id)
        return await super().keepalive_once(lease_id, timeout=timeout)


async def test_keys_gone_between_read_and_keepalive_are_lost(
    etcd_session: EtcdProcess, etcd_prefix: str
) -> None:
    async with await RevokingClient.connect([etcd_session.endpoint]) as revoking:
        provider = EtcdLeaseProvider(revoking, etcd_prefix)
        grants = grants_of(await provider.acquire_leases(ids(3), A, TTL))
        assert await provider.renew_leases(grants) == [Lost(g.identity) for g in grants]


async def test_a_cached_etcd_lease_is_kept_alive_before_new_keys_join_it(
    client: EtcdClient, etcd_prefix: str
) -> None:
    clock = FakeClock()
    provider = EtcdLeaseProvider(client, etcd_prefix, clock=clock)
    grants_of(await provider.acquire_leases(["a"], A, TTL))
    before = client.round_trips
    grants_of(await provider.acquire_leases(["b"], A, TTL))
    assert client.round_trips - before == 1  # confirmed alive moments ago: just the txn
    clock.advance(TTL.total_seconds() / 2)
    before = client.round_trips
    grants_of(await provider.acquire_leases(["c"], A, TTL))
    assert client.round_trips - before == 2  # a keepalive first, then the txn


# -- failures ------------------------------------------------------------------------------


class FlakyClient(EtcdClient):
    """Fails every acquire txn touching ``poison``: before sending it, or after etcd
    applied it (the reply is lost)."""

    poison: bytes = b""
    mode: Literal["before", "after"] = "before"

    async def txn(
        self, request: rpc_pb2.TxnRequest, *, timeout: float | None = None
    ) -> rpc_pb2.TxnResponse:
        puts = [
            op.request_txn.success[0].request_put.key
            for op in request.success
            if op.HasField("request_txn")
            and op.request_txn.success
            and op.request_txn.success[0].HasField("request_put")
        ]
        if self.poison not in puts:
            return await super().txn(request, timeout=timeout)
        if self.mode == "after":
            await super().txn(request, timeout=timeout)
        raise EtcdUnavailable("injected failure")


@pytest.mark.parametrize("mode", ["before", "after"])
async def test_failed_acquire_leaves_nothing_behind(
    etcd_session: EtcdProcess, etcd_prefix: str, mode: Literal["before", "after"]
) -> None:
    async with await FlakyClient.connect([etcd_session.endpoint]) as flaky:
        provider = EtcdLeaseProvider(flaky, etcd_prefix, retry_budget=0.3)
        held = grants_of(await provider.acquire_leases(ids(5, "held"), A, TTL))
        names = ids(5, "held") + ids(300)
        flaky.poison = provider.key(names[200])
        flaky.mode = mode
        with pytest.raises(LeaseProviderUnavailable):
            await provider.acquire_leases(names, A, TTL)
        stored = await lease_keys(flaky, etcd_prefix)
        # What the instance held before is untouched; nothing of the failed call stays.
        assert stored == {
            g.identity: (A.encode(), g.fencing_token, stored[g.identity][2]) for g in held
        }
        assert all(isinstance(r, Renewed) for r in await provider.renew_leases(held))


async def test_etcd_down_is_unavailable_and_changes_nothing(etcd: EtcdProcess) -> None:
    async with await EtcdClient.connect([etcd.endpoint], timeout=1.0) as client:
        provider = EtcdLeaseProvider(client, "/down", retry_budget=0.5)
        grants = grants_of(await provider.acquire_leases(ids(3), A, TTL))
        etcd.kill()
        async with asyncio.timeout(WAIT):
            for call in (
                provider.acquire_leases(ids(3, "new"), A, TTL),
                provider.renew_leases(grants),
                provider.release_leases(grants),
                provider.list_leases(),
            ):
                with pytest.raises(LeaseProviderUnavailable) as info:
                    await call
                assert info.value.reason == "BACKEND_UNAVAILABLE"
        await etcd.restart_async(graceful=False)
        async with asyncio.timeout(WAIT):
            stored = await lease_keys(client, "/down")
        assert sorted(stored) == ids(3)


async def test_etcd_restart_during_renewals(etcd: EtcdProcess) -> None:
    """UNAVAILABLE while etcd is down, back to Renewed by itself once it is up again,
    and never Renewed for a key that is gone."""
    settings = {"etcd_endpoints": [etcd.endpoint], "etcd_prefix": "/restart"}
    async with running_services(["lease"], **settings) as (_, channel, _settings):
        provider = GrpcLeaseProvider(channel, timeout=10.0)
        grants = grants_of(await provider.acquire_leases(ids(50), A, timedelta(seconds=5)))
        outcomes: list[list | LeaseProviderUnavailable] = []
        stop, changed = asyncio.Event(), asyncio.Event()

        async def renew_forever() -> None:
            while not stop.is_set():
                try:
                    outcomes.append(await provider.renew_leases(grants))
                except LeaseProviderUnavailable as exc:
                    outcomes.append(exc)
                changed.set()
                await asyncio.sleep(0.1)

        async def until(predicate: Callable[[], bool]) -> None:
            async with asyncio.timeout(WAIT * 2):
                while not predicate():
                    changed.clear()
                    await changed.wait()

        loop = asyncio.create_task(renew_forever())
        try:
            await until(lambda: len(outcomes) >= 2)
            etcd.kill()
            down_from = len(outcomes)
            await until(lambda: any(isinstance(o, Exception) for o in outcomes[down_from:]))
            await etcd.restart_async(graceful=False)
            up_from = len(outcomes)
            await until(lambda: any(isinstance(o, list) for o in outcomes[up_from:]))
        finally:
            stop.set()
            await asyncio.wait_for(loop, WAIT)

        errors = [o for o in outcomes if isinstance(o, Exception)]
        assert errors and all(e.reason == "BACKEND_UNAVAILABLE" for e in errors)
        # The etcd lease survived the restart, so every answer was Renewed.
        for outcome in outcomes:
            if isinstance(outcome, list):
                assert all(isinstance(r, Renewed) for r in outcome)

        async with await EtcdClient.connect([etcd.endpoint]) as raw:
            stored = await lease_keys(raw, "/restart")
            for grant in grants[:10]:  # taken away behind the service's back
                await raw.delete(f"/restart/leases/{grant.identity}")
            results = await provider.renew_leases(grants)
            assert results[:10] == [Lost(g.identity) for g in grants[:10]]
            assert all(isinstance(r, Renewed) for r in results[10:])
            await raw.revoke_lease(stored[grants[10].identity][2])
            assert await provider.renew_leases(grants) == [Lost(g.identity) for g in grants]


async def test_cluster_keeps_working_when_the_leader_is_killed(
    etcd_cluster: EtcdCluster,
) -> None:
    async with await EtcdClient.connect(etcd_cluster.endpoints, timeout=2.0) as client:
        provider = EtcdLeaseProvider(client, "/cluster")
        grants = grants_of(await provider.acquire_leases(ids(200), A, TTL))
        status = await client.status()
        members = (await client.member_list()).members
        leader = next(m.name for m in members if status.leader == m.ID)
        etcd_cluster.kill(int(leader.removeprefix("m")))

        assert all(isinstance(r, Renewed) for r in await provider.renew_leases(grants))
        more = grants_of(await provider.acquire_leases(ids(200, "more"), A, TTL))
        taken = await provider.acquire_leases(ids(200), B, TTL)
        assert all(isinstance(r, AlreadyHeld) and r.holder == A for r in taken)
        assert all(isinstance(r, Renewed) for r in await provider.renew_leases(grants + more))
