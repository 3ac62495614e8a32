"""LeaseProvider behaviour (CONTRACT-02), the same checks against every backend:
in memory, on real etcd, and through the real gRPC service and client adapter."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from lease_support import WAIT, Backend

from mobkit.core.errors import InvalidArgument, InvalidIdentity, MobKitError
from mobkit.core.identity import AgentIdentity
from mobkit.core.types import Acquired, AlreadyHeld, LeaseGrant, Lost, Renewed
from mobkit.lease.domain import LeaseProvider

TTL = timedelta(seconds=10)
A = "orch-a@127.0.0.1:7001"
B = "orch-b@127.0.0.1:7002"


def grants_of(results: list) -> list[LeaseGrant]:
    assert all(isinstance(r, Acquired) for r in results), results
    return [r.grant for r in results]


async def all_leases(provider: LeaseProvider, page_size: int = 0) -> list:
    out, token = [], ""
    while True:
        page, token = await provider.list_leases(page_size, token)
        out.extend(page)
        if not token:
            return out


def test_every_backend_implements_the_port(backend: Backend) -> None:
    assert isinstance(backend.provider, LeaseProvider)


async def test_acquire_returns_one_grant_per_identity_in_request_order(backend: Backend) -> None:
    ids = ["zeta", "alpha", "mid", "beta"]
    results = await backend.provider.acquire_leases(ids, A, TTL)
    grants = grants_of(results)
    assert [g.identity for g in grants] == ids
    assert all(g.fencing_token > 0 for g in grants)
    assert all(g.ttl >= TTL for g in grants)
    assert await backend.provider.acquire_leases([], A, TTL) == []


async def test_same_instance_reacquires_idempotently(backend: Backend) -> None:
    first = grants_of(await backend.provider.acquire_leases(["a", "b"], A, TTL))
    again = grants_of(await backend.provider.acquire_leases(["b", "a", "c"], A, TTL))
    assert [g.fencing_token for g in again[:2]] == [first[1].fencing_token, first[0].fencing_token]
    assert again[2].identity == "c"


async def test_other_instance_sees_already_held_naming_the_holder(backend: Backend) -> None:
    mine = grants_of(await backend.provider.acquire_leases(["x", "y"], A, TTL))
    results = await backend.provider.acquire_leases(["new", "x", "y"], B, TTL)
    assert isinstance(results[0], Acquired)
    assert results[1:] == [AlreadyHeld(AgentIdentity("x"), A), AlreadyHeld(AgentIdentity("y"), A)]
    renewed = await backend.provider.renew_leases(mine)
    assert [type(r) for r in renewed] == [Renewed, Renewed]


async def test_renew_keeps_the_token_and_reports_lost_after_release(backend: Backend) -> None:
    grants = grants_of(await backend.provider.acquire_leases(["r1", "r2", "r3"], A, TTL))
    renewed = await backend.provider.renew_leases(grants)
    assert [r.grant.fencing_token for r in renewed if isinstance(r, Renewed)] == [
        g.fencing_token for g in grants
    ]
    assert all(isinstance(r, Renewed) and r.grant.ttl >= TTL for r in renewed)

    await backend.provider.release_leases([grants[1]])
    after = await backend.provider.renew_leases(grants)
    assert isinstance(after[0], Renewed)
    assert after[1] == Lost(AgentIdentity("r2"))
    assert isinstance(after[2], Renewed)


async def test_renew_of_unknown_or_wrong_token_is_lost(backend: Backend) -> None:
    [grant] = grants_of(await backend.provider.acquire_leases(["held"], A, TTL))
    forged = LeaseGrant(grant.identity, grant.fencing_token + 1000, TTL)
    never = LeaseGrant(AgentIdentity("never-acquired"), 7, TTL)
    assert await backend.provider.renew_leases([forged, never]) == [
        Lost(grant.identity),
        Lost(never.identity),
    ]
    [renewed] = await backend.provider.renew_leases([grant])
    assert isinstance(renewed, Renewed)
    assert await backend.provider.renew_leases([]) == []


async def test_new_holder_gets_a_larger_token_and_stale_release_is_a_noop(backend: Backend) -> None:
    [old] = grants_of(await backend.provider.acquire_leases(["ident"], A, TTL))
    await backend.provider.release_leases([old])
    await backend.provider.release_leases([old])  # idempotent
    [new] = grants_of(await backend.provider.acquire_leases(["ident"], B, TTL))
    assert new.fencing_token > old.fencing_token

    await backend.provider.release_leases([old])  # stale: must not delete B's key
    [renewed] = await backend.provider.renew_leases([new])
    assert isinstance(renewed, Renewed) and renewed.grant.fencing_token == new.fencing_token
    assert await backend.provider.renew_leases([old]) == [Lost(old.identity)]
    held = await backend.provider.acquire_leases(["ident"], A, TTL)
    assert held == [AlreadyHeld(AgentIdentity("ident"), B)]


async def test_list_leases_paginates_in_identity_order(backend: Backend) -> None:
    ids = [f"agent-{i:02d}" for i in range(7)]
    mine = grants_of(await backend.provider.acquire_leases(ids[:4], A, TTL))
    theirs = grants_of(await backend.provider.acquire_leases(ids[4:], B, TTL))
    leases = await all_leases(backend.provider, page_size=3)
    assert [lease.identity for lease in leases] == ids
    by_id: dict[str, int] = {g.identity: g.fencing_token for g in mine + theirs}
    assert [lease.fencing_token for lease in leases] == [by_id[i] for i in ids]
    assert [lease.holder for lease in leases] == [A] * 4 + [B] * 3
    assert all(timedelta(0) < lease.ttl_remaining <= TTL + timedelta(seconds=1) for lease in leases)

    page, token = await backend.provider.list_leases(3, "")
    assert len(page) == 3 and token
    rest, _ = await backend.provider.list_leases(0, token)
    assert [lease.identity for lease in rest] == ids[3:]


@pytest.mark.parametrize(("page_size", "page_token"), [(-1, ""), (0, "not a token!"), (0, "AAAA")])
async def test_list_leases_rejects_bad_paging(
    backend: Backend, page_size: int, page_token: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        await backend.provider.list_leases(page_size, page_token)
    assert info.value.field in ("page_size", "page_token")


async def test_release_of_everything_leaves_nothing_listed(backend: Backend) -> None:
    grants = grants_of(await backend.provider.acquire_leases(["p", "q"], A, TTL))
    await backend.provider.release_leases(grants)
    assert await all_leases(backend.provider) == []
    # The instance can start over afterwards (its etcd lease may have been revoked).
    again = grants_of(await backend.provider.acquire_leases(["p"], A, TTL))
    assert again[0].fencing_token > grants[0].fencing_token


# -- bad input: refused, and nothing changes ------------------------------------------------


BAD_ACQUIRES = [
    pytest.param(
        ["ok", "has space"], A, TTL, InvalidIdentity, {"identity": "has space"}, id="space"
    ),
    pytest.param(["ok", "a/b"], A, TTL, InvalidIdentity, {"identity": "a/b"}, id="slash"),
    pytest.param(["ok", ""], A, TTL, InvalidIdentity, {"identity": ""}, id="empty-identity"),
    pytest.param(
        ["ok", "d", "d"], A, TTL, InvalidArgument, {"field": "identities"}, id="duplicate"
    ),
    pytest.param(["ok"], "", TTL, InvalidArgument, {"field": "runtime_instance"}, id="no-instance"),
    pytest.param(["ok"], A, timedelta(0), InvalidArgument, {"field": "ttl"}, id="zero-ttl"),
    pytest.param(["ok"], A, timedelta(seconds=-5), InvalidArgument, {"field": "ttl"}, id="neg-ttl"),
    pytest.param(["ok"], A, timedelta(hours=2), InvalidArgument, {"field": "ttl"}, id="long-ttl"),
]


@pytest.mark.parametrize(("ids", "instance", "ttl", "error", "metadata"), BAD_ACQUIRES)
async def test_bad_acquire_is_refused_without_changing_state(
    backend: Backend,
    ids: list[str],
    instance: str,
    ttl: timedelta,
    error: type[MobKitError],
    metadata: dict[str, str],
) -> None:
    [held] = grants_of(await backend.provider.acquire_leases(["held"], B, TTL))
    with pytest.raises(error) as info:
        await backend.provider.acquire_leases(ids, instance, ttl)
    assert info.value.reason == error.reason
    assert metadata.items() <= info.value.metadata.items()
    assert [lease.identity for lease in await all_leases(backend.provider)] == ["held"]
    [renewed] = await backend.provider.renew_leases([held])
    assert isinstance(renewed, Renewed)


async def test_bad_renew_and_release_are_refused_without_changing_state(backend: Backend) -> None:
    grants = grants_of(await backend.provider.acquire_leases(["g1", "g2"], A, TTL))
    bad_batches = [
        [grants[0], grants[0]],
        [grants[0], LeaseGrant(AgentIdentity("bad id"), 5, TTL)],
        [LeaseGrant(grants[1].identity, 0, TTL)],
    ]
    for batch in bad_batches:
        with pytest.raises((InvalidArgument, InvalidIdentity)):
            await backend.provider.release_leases(batch)
        with pytest.raises((InvalidArgument, InvalidIdentity)):
            await backend.provider.renew_leases(batch)
    assert [type(r) for r in await backend.provider.renew_leases(grants)] == [Renewed, Renewed]
    assert len(await all_leases(backend.provider)) == 2


# -- expiry ---------------------------------------------------------------------------------


async def test_expired_leases_go_to_the_next_holder_with_larger_tokens(backend: Backend) -> None:
    short = timedelta(seconds=1)
    ids = [f"exp-{i}" for i in range(20)]
    old = grants_of(await backend.provider.acquire_leases(ids, A, short))

    # A stops renewing: once its TTL has passed, B gets every identity.
    new: list[LeaseGrant] = []
    async with asyncio.timeout(WAIT):
        while not new:
            await backend.pass_time(0.5)
            results = await backend.provider.acquire_leases(ids, B, TTL)
            if all(isinstance(r, Acquired) for r in results):
                new = grants_of(results)
            else:  # never a mix of stale and new: all of A's leases share one expiry
                assert all(isinstance(r, AlreadyHeld) and r.holder == A for r in results)
    assert all(n.fencing_token > o.fencing_token for n, o in zip(new, old, strict=True))

    assert await backend.provider.renew_leases(old) == [Lost(g.identity) for g in old]
    await backend.provider.release_leases(old)  # a no-op
    assert all(isinstance(r, Renewed) for r in await backend.provider.renew_leases(new))
    assert {lease.holder for lease in await all_leases(backend.provider)} == {B}


async def test_renewing_one_grant_keeps_the_whole_instance_alive(backend: Backend) -> None:
    short = timedelta(seconds=3)
    grants = grants_of(await backend.provider.acquire_leases(["k1", "k2", "k3"], A, short))
    for _ in range(5):  # 5 x 1 s > the TTL: only the renewals keep them
        await backend.pass_time(1.0)
        assert isinstance((await backend.provider.renew_leases(grants[:1]))[0], Renewed)
    results = await backend.provider.acquire_leases(["k2", "k3"], B, TTL)
    assert results == [AlreadyHeld(AgentIdentity("k2"), A), AlreadyHeld(AgentIdentity("k3"), A)]
