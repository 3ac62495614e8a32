"""Claims that meet an etcd fault (a leader election under way) never leave an identity
ownerless while a replica has room for it.

Two in-process replicas (the orchestrator domain with its real etcd lease provider,
continuity store and replica registry) on the session etcd; each test injects one fault
at a provider seam and drives the claim rounds itself, so the outcome is exact:

* the read that follows an acquire fails: the acquired grants must not stay on slots
  that are never activated (they were renewed forever, answering NOT_ACTIVE dormant);
* an acquire applied in etcd whose reply was lost: the replica's own keys must be
  taken back before new vacancies, or one could stay held by nobody running it;
* a Send that arrives while its identity is being activated waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import pytest

from mobkit.continuity.etcd_backend import EtcdContinuityStore
from mobkit.core.errors import BackendUnavailable, LeaseProviderUnavailable
from mobkit.core.identity import AgentIdentity
from mobkit.core.types import DispatchInput, DurableAgentSpec, IdentityLifecycleState
from mobkit.customizer.rules import DeclarativeCustomizer
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.process import EtcdProcess
from mobkit.events.memory import MemoryEventLog
from mobkit.lease.etcd_backend import EtcdLeaseProvider
from mobkit.orchestrator.fleet import ReplicaRegistry, preference
from mobkit.orchestrator.orchestrator import Orchestrator, Providers
from mobkit.orchestrator.routing import Router
from mobkit.roster.memory import MemoryRoster
from mobkit.runtime.local import LocalAgentRuntime
from mobkit.topology.provider import PolicyTopology

pytestmark = pytest.mark.timeout(60)
TTL = timedelta(seconds=30)  # no lease expires during a test: only the faults act
ACTIVE = IdentityLifecycleState.ACTIVE


class FaultyLeases(EtcdLeaseProvider):
    """With ``lose_next_acquire``, the next acquire is applied in etcd and then reported
    unavailable (its reply lost), leaving keys no undo removed."""

    lose_next_acquire = False

    async def acquire_leases(self, *args: Any, **kwargs: Any) -> Any:
        results = await super().acquire_leases(*args, **kwargs)
        if self.lose_next_acquire:
            self.lose_next_acquire = False
            raise LeaseProviderUnavailable("reply lost: etcd leader changed", backend="etcd")
        return results


class FaultyContinuity(EtcdContinuityStore):
    """``fail_next_resolve`` fails the next resolve as during an election; with ``hold``
    set, each resolve signals ``entered`` and waits until ``hold`` is set."""

    fail_next_resolve = False
    hold: asyncio.Event | None = None
    entered: asyncio.Event | None = None

    async def resolve_many(self, *args: Any, **kwargs: Any) -> Any:
        if self.fail_next_resolve:
            self.fail_next_resolve = False
            raise BackendUnavailable("etcd", "etcdserver: leader changed")
        if self.hold is not None and self.entered is not None:
            self.entered.set()
            await self.hold.wait()
        return await super().resolve_many(*args, **kwargs)


@pytest.fixture
async def replica(etcd_session: EtcdProcess, etcd_prefix: str) -> AsyncIterator[Any]:
    """Builds in-process replicas (registered in the fleet, nothing claimed yet) on one
    etcd prefix, and stops them all at the end."""
    async with AsyncExitStack() as stack:
        client = await EtcdClient.connect([etcd_session.endpoint])
        stack.push_async_callback(client.close)

        async def make(name: str, identities: Sequence[str]) -> Orchestrator:
            holder = f"{name}~1@127.0.0.1:1"
            registry = ReplicaRegistry(client, etcd_prefix, holder, ttl_s=15)
            await registry.start()
            stack.push_async_callback(registry.stop)
            router = Router(registry)
            stack.push_async_callback(router.close)
            specs = [DurableAgentSpec(AgentIdentity(i), "notebook") for i in identities]
            providers = Providers(
                leases=FaultyLeases(client, etcd_prefix),
                continuity=FaultyContinuity(client, prefix=etcd_prefix),
                roster=MemoryRoster(specs),
                topology=PolicyTopology(),
                customizer=DeclarativeCustomizer(),
                runtime=LocalAgentRuntime(),
                events=MemoryEventLog("test"),
            )
            o = Orchestrator(providers, instance=holder, lease_ttl=TTL, fleet=router)
            stack.push_async_callback(o.shutdown)
            return o

        yield make


def leases(o: Orchestrator) -> FaultyLeases:
    assert isinstance(o.p.leases, FaultyLeases)
    return o.p.leases


def continuity(o: Orchestrator) -> FaultyContinuity:
    assert isinstance(o.p.continuity, FaultyContinuity)
    return o.p.continuity


def hosted(o: Orchestrator) -> set[str]:
    return {i for i, s in o.slots.items() if s.state is ACTIVE and s.grant is not None}


def assert_one_owner_each(identities: Sequence[str], *replicas: Orchestrator) -> None:
    owners = {i: [o.instance for o in replicas if i in hosted(o)] for i in identities}
    assert all(len(v) == 1 for v in owners.values()), owners


async def test_failure_after_acquire_hands_the_grants_back(replica: Any) -> None:
    ids = ["a1", "a2", "a3", "a4"]
    x, y = await replica("x", ids), await replica("y", ids)  # fair share: 2 each
    continuity(x).fail_next_resolve = True
    with pytest.raises(BackendUnavailable):
        await x.reconcile()  # acquires its 2, then etcd fails the resolve
    # Nothing half-claimed stays: a grant is only ever on an Active slot.
    assert [i for i, s in x.slots.items() if s.grant is not None] == []
    await y.reconcile()
    await x.claim()  # the next round of the claim loop
    assert_one_owner_each(ids, x, y)
    for identity in ids:
        owner = x if identity in hosted(x) else y
        receipt = await owner.send(identity, DispatchInput("hello"))
        assert receipt.checkpoint_version == 1


async def test_own_key_from_a_lost_acquire_reply_is_taken_back_first(
    replica: Any,
) -> None:
    ids = ["b1", "b2", "b3"]
    x, y = await replica("x", ids), await replica("y", ids)  # fair share: 2 each
    # The identity x wants most is held elsewhere while x's acquire reply is lost.
    first, *others = preference(ids, x.instance)
    outsider = "z~1@127.0.0.1:2"
    held = await leases(x).acquire_leases([first], outsider, TTL)
    leases(x).lose_next_acquire = True
    with pytest.raises(LeaseProviderUnavailable):
        await x.reconcile()  # applied in etcd: both others are now x's keys
    assert await x.fleet.held() == {first: outsider, **dict.fromkeys(others, x.instance)}
    await leases(x).release_leases([r.grant for r in held])  # `first` is vacant again
    await x.claim()
    await y.reconcile()
    assert_one_owner_each(ids, x, y)
    assert hosted(x) == set(others)


async def test_send_waits_for_an_activation_in_progress(replica: Any) -> None:
    x = await replica("x", ["c1"])
    store = continuity(x)
    store.hold, store.entered = asyncio.Event(), asyncio.Event()
    activating = asyncio.create_task(x.reconcile())
    async with asyncio.timeout(30):
        await store.entered.wait()  # c1's lease is acquired, its session not built
    send = asyncio.create_task(x.send("c1", DispatchInput("hello")))
    await asyncio.sleep(0)  # one loop turn: the send runs up to its first wait
    assert not send.done(), send.exception()
    store.hold.set()
    async with asyncio.timeout(30):
        receipt = await send
        report = await activating
    assert report.activated == ["c1"]
    assert receipt.checkpoint_version == 1
