"""The replica registry against a real etcd: vacancies are noticed as they happen."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from mobkit.core.types import Acquired
from mobkit.etcd.client import EtcdClient
from mobkit.lease.memory import MemoryLeaseProvider
from mobkit.orchestrator.fleet import ReplicaRegistry, registration_ttl
from mobkit.testing.suite import eventually

pytestmark = pytest.mark.timeout(60)


class HandledEvents:
    """An etcd client whose watches record each event's key once the consumer has
    handled it (asked for the next one): the events a registry has acted on, in order."""

    def __init__(self, client: EtcdClient) -> None:
        self._client = client
        self.handled: list[bytes] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def watch(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async for event in self._client.watch(*args, **kwargs):
            yield event
            self.handled.append(event.kv.key)


async def until_watched(client: EtcdClient, seen: HandledEvents, prefix: str) -> None:
    """Bounded poll until the watch on ``prefix`` is in place: delete probe keys until
    one is handled, then wait for the last probe so none is still on its way."""
    keys: list[bytes] = []
    async with asyncio.timeout(15):
        while not set(keys) & set(seen.handled):
            keys.append(f"{prefix}probe-{len(keys)}".encode())
            await client.put(keys[-1], b"")
            await client.delete(keys[-1])
            for _ in range(4):  # this probe's turn: up to 0.2 s
                if keys[-1] in seen.handled:
                    break
                await asyncio.sleep(0.05)
        await eventually(lambda: keys[-1] in seen.handled, "the last probe", 15.0)


async def test_deleted_and_expired_keys_are_vacancies_but_puts_are_not(etcd_session: Any) -> None:
    prefix = f"/reg-{uuid.uuid4().hex[:8]}"
    async with await EtcdClient.connect([etcd_session.endpoint], timeout=5.0) as client:
        seen = HandledEvents(client)
        watcher = ReplicaRegistry(seen, prefix, "a~1@127.0.0.1:1", 2)
        calls: list[float] = []
        task = asyncio.create_task(watcher.watch_vacancies(lambda: calls.append(0.0)))
        try:
            for watched in ("leases", "replicas", "intents"):
                await until_watched(client, seen, f"{prefix}/{watched}/")
            calls.clear()
            await client.put(f"{prefix}/leases/x", b"a~1@127.0.0.1:1")
            await client.put(f"{prefix}/continuity/x", b"{}")  # not watched
            await client.delete(f"{prefix}/leases/x")
            key = f"{prefix}/leases/x".encode()
            await eventually(lambda: key in seen.handled, "the delete handled", 15.0)
            # Events come in order: a put reported as a vacancy would have come first.
            assert len(calls) == 1

            # A replica that dies: its registration expires with its etcd lease.
            dead = ReplicaRegistry(client, prefix, "b~2@127.0.0.1:2", 2)
            await dead.start()
            assert "b~2@127.0.0.1:2" in await watcher.members()
            assert dead._task is not None
            dead._task.cancel()  # no more keepalives, nothing revoked: as after SIGKILL
            await eventually(lambda: len(calls) == 2, "the expiry noticed", 15.0)
            assert await watcher.members() == []
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def test_a_registration_expires_before_the_identity_leases() -> None:
    for ttl in (0.5, 2.0, 3.0, 5.0, 10.0, 30.0):
        # The lease keys outlive their last renewal (every TTL/3) by at least 2/3 TTL.
        assert registration_ttl(ttl) <= max(2, 2 / 3 * ttl + 0.5)
    assert registration_ttl(5.0) == 3 and registration_ttl(1.0) == 2


async def test_an_intent_is_written_only_under_the_current_fencing_token(
    etcd_session: Any,
) -> None:
    prefix = f"/reg-{uuid.uuid4().hex[:8]}"
    async with await EtcdClient.connect([etcd_session.endpoint], timeout=5.0) as client:
        registry = ReplicaRegistry(client, prefix, "a~1@127.0.0.1:1", 2)
        await client.put(f"{prefix}/leases/x", b"a~1@127.0.0.1:1")
        kv = await client.get(f"{prefix}/leases/x")
        assert kv is not None
        token = int(kv.create_revision)
        # A stale owner (an older token) records nothing.
        assert not await registry.set_intent("x", "suspended", token - 1)
        assert await registry.intents() == {}
        assert await registry.set_intent("x", "suspended", token)
        assert await registry.intents() == {"x": "suspended"}
        # The lease key recreated (a new owner): the old token no longer counts.
        await client.delete(f"{prefix}/leases/x")
        await client.put(f"{prefix}/leases/x", b"b~2@127.0.0.1:2")
        assert not await registry.set_intent("x", None, token)
        assert await registry.intents() == {"x": "suspended"}
        assert await registry.set_intent("x", None, 0)  # an operator's resume: unfenced
        assert await registry.intents() == {}


async def test_ownership_answers_come_from_the_lease_provider(etcd_session: Any) -> None:
    """The registry asks the lease port who owns what; it reads no lease key itself."""
    prefix = f"/reg-{uuid.uuid4().hex[:8]}"
    leases = MemoryLeaseProvider()
    async with await EtcdClient.connect([etcd_session.endpoint], timeout=5.0) as client:
        registry = ReplicaRegistry(client, prefix, "a~1@127.0.0.1:1", 2, leases=leases)
        await client.put(f"{prefix}/leases/stray", b"b~2@127.0.0.1:2")  # not the port's
        assert await registry.owner("x") is None and await registry.held() == {}
        await leases.acquire_leases(["x"], "a~1@127.0.0.1:1", timedelta(seconds=10))
        assert await registry.owner("x") == "a~1@127.0.0.1:1"
        assert await registry.held() == {"x": "a~1@127.0.0.1:1"}
        assert await registry.owner("stray") is None


class CountedLeases(MemoryLeaseProvider):
    """A lease provider that counts the ownership lookups it answers."""

    lookups = 0

    async def holder_of(self, identity: str) -> str | None:
        self.lookups += 1
        return await super().holder_of(identity)


async def test_an_owner_is_remembered_for_forwarding_until_its_lease_goes(
    etcd_session: Any,
) -> None:
    prefix = f"/reg-{uuid.uuid4().hex[:8]}"
    owner = "b~2@127.0.0.1:2"
    leases = CountedLeases()
    async with await EtcdClient.connect([etcd_session.endpoint], timeout=5.0) as client:
        registry = ReplicaRegistry(client, prefix, "a~1@127.0.0.1:1", 2, leases=leases)
        (result,) = await leases.acquire_leases(["x"], owner, timedelta(seconds=10))
        assert isinstance(result, Acquired)
        # Without the release watch nothing is remembered: every lookup asks.
        assert await registry.owner("x", recent=True) == owner
        assert await registry.owner("x", recent=True) == owner
        assert leases.lookups == 2
        task = asyncio.create_task(registry.watch_vacancies(lambda: None))
        try:
            await eventually(lambda: bool(leases._watchers), "the release watch", 15.0)
            assert await registry.owner("x", recent=True) == owner
            assert await registry.owner("x", recent=True) == owner
            assert leases.lookups == 3
            assert await registry.owner("x") == owner  # a plain lookup always asks
            assert leases.lookups == 4
            registry.forget_owner("x")  # found stale by its caller
            assert await registry.owner("x", recent=True) == owner
            assert leases.lookups == 5
            await leases.release_leases([result.grant], owner)  # reported: forgotten
            assert await registry.owner("x", recent=True) is None
            assert leases.lookups == 6
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_the_claim_loops_read_of_every_holder_is_remembered_too(etcd_session: Any) -> None:
    prefix = f"/reg-{uuid.uuid4().hex[:8]}"
    owner = "b~2@127.0.0.1:2"
    leases = CountedLeases()
    async with await EtcdClient.connect([etcd_session.endpoint], timeout=5.0) as client:
        registry = ReplicaRegistry(client, prefix, "a~1@127.0.0.1:1", 2, leases=leases)
        results = await leases.acquire_leases(["x", "y"], owner, timedelta(seconds=10))
        task = asyncio.create_task(registry.watch_vacancies(lambda: None))
        try:
            await eventually(lambda: bool(leases._watchers), "the release watch", 15.0)
            assert await registry.held() == {"x": owner, "y": owner}
            assert await registry.owner("x", recent=True) == owner
            assert await registry.owner("y", recent=True) == owner
            assert leases.lookups == 0
            grants = [r.grant for r in results if isinstance(r, Acquired)]
            await leases.release_leases(grants[:1], owner)  # x: reported, forgotten
            assert await registry.owner("x", recent=True) is None
            assert leases.lookups == 1
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
