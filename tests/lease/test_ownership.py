"""Ownership questions (``LeaseOwnership``), the same checks against every backend: in
memory, on real etcd, and through the real gRPC service (answered from ListLeases
pages, releases found by polling them)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta

from lease_support import WAIT, Backend

from mobkit.core.types import Acquired
from mobkit.lease.domain import LeaseProvider
from mobkit.testing.suite import eventually

TTL = timedelta(seconds=10)
A = "orch-a~1@127.0.0.1:7001"
B = "orch-b~2@127.0.0.1:7002"


async def test_the_holder_of_an_identity_is_its_current_grantee(backend: Backend) -> None:
    leases = backend.provider
    assert await leases.holder_of("planner") is None
    (result,) = await leases.acquire_leases(["planner"], A, TTL)
    assert isinstance(result, Acquired)
    assert await leases.holder_of("planner") == A
    await leases.release_leases([result.grant], A)
    assert await leases.holder_of("planner") is None
    await leases.acquire_leases(["planner"], B, TTL)
    assert await leases.holder_of("planner") == B


async def test_holders_names_every_held_identity_and_no_vacant_one(backend: Backend) -> None:
    leases = backend.provider
    assert await leases.holders() == {}
    mine = await leases.acquire_leases(["a", "b", "c"], A, TTL)
    await leases.acquire_leases(["c", "d"], B, TTL)  # c stays A's
    assert await leases.holders() == {"a": A, "b": A, "c": A, "d": B}
    (b,) = [r.grant for r in mine if isinstance(r, Acquired) and r.grant.identity == "b"]
    await leases.release_leases([b], A)
    assert await leases.holders() == {"a": A, "c": A, "d": B}


async def test_holders_reads_past_one_page(backend: Backend) -> None:
    ids = [f"id-{n:04d}" for n in range(1100)]  # more than ListLeases' largest page
    await backend.provider.acquire_leases(ids, A, TTL)
    held = await backend.provider.holders()
    assert sorted(held) == ids and set(held.values()) == {A}


def reported(seen: list[str], identity: str) -> Callable[[], bool]:
    return lambda: identity in seen


async def watching(leases: LeaseProvider, seen: list[str], tag: str) -> None:
    """Bounded: release probe leases until the watch reports one. Then the watch is in
    place, and a polling one has looked since this call began."""
    for n in range(30):
        probe = f"probe-{tag}-{n}"
        (result,) = await leases.acquire_leases([probe], A, TTL)
        assert isinstance(result, Acquired)
        await asyncio.sleep(0.2)
        await leases.release_leases([result.grant], A)
        with contextlib.suppress(AssertionError):
            await eventually(reported(seen, probe), "the probe's release", 2.0)
            return
    raise AssertionError("the release watch never reported a release")


async def test_watchers_hear_of_releases_and_expiries(backend: Backend) -> None:
    leases = backend.provider
    seen: list[str] = []
    (kept,) = await leases.acquire_leases(["kept"], B, timedelta(minutes=5))
    watch = asyncio.create_task(leases.watch_releases(seen.append))
    try:
        await watching(leases, seen, "start")
        (released,) = await leases.acquire_leases(["released"], B, TTL)
        assert isinstance(released, Acquired)
        await watching(leases, seen, "held")  # seen held by a polling watch
        await leases.release_leases([released.grant], B)
        await eventually(lambda: "released" in seen, "the release reported", WAIT)
        await leases.acquire_leases(["expiring"], A, timedelta(seconds=1))
        await watching(leases, seen, "expiring")
        await backend.pass_time(3)  # nobody renews it
        await eventually(lambda: "expiring" in seen, "the expiry reported", WAIT)
        assert "kept" not in seen
        assert isinstance(kept, Acquired)
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
