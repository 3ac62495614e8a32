"""Ownership questions (``LeaseOwnership``), the same checks against every backend: in
memory, on real etcd, and through the real gRPC service (answered from ListLeases
pages)."""

from __future__ import annotations

from datetime import timedelta

from lease_support import Backend

from mobkit.core.types import Acquired

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
