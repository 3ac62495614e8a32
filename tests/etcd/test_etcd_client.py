"""EtcdClient against a real etcd: KV, txns, pagination, leases, watch, errors."""

from __future__ import annotations

import asyncio

import pytest

from mobkit.etcd import (
    EtcdClient,
    EtcdCompacted,
    EtcdError,
    EtcdLeaseNotFound,
    EtcdUnavailable,
    prefix_end,
)
from mobkit.etcd.ops import (
    compare_create_revision,
    compare_value,
    put_op,
    range_op,
    txn_op,
    txn_request,
)
from mobkit.etcd.process import EtcdProcess
from mobkit.gen.etcd.api.mvccpb import kv_pb2
from mobkit.testing.etcd_member import EtcdMember

WAIT = 10.0  # upper bound for anything that waits on etcd


@pytest.mark.parametrize(
    ("prefix", "end"),
    [(b"a", b"b"), (b"/x/", b"/x0"), (b"a\xff", b"b"), (b"\xff\xff", b"\0"), (b"", b"\0")],
)
def test_prefix_end(prefix: bytes, end: bytes) -> None:
    assert prefix_end(prefix) == end


async def test_put_get_range_delete(etcd_client: EtcdClient, etcd_prefix: str) -> None:
    put = await etcd_client.put(etcd_prefix + "a", "1")
    await etcd_client.put(etcd_prefix + "b", b"2")
    kv = await etcd_client.get(etcd_prefix + "a")
    assert kv is not None
    assert (kv.value, kv.create_revision, kv.version) == (b"1", put.header.revision, 1)

    reply = await etcd_client.range(etcd_prefix, prefix_end(etcd_prefix))
    assert [(k.key, k.value) for k in reply.kvs] == [
        ((etcd_prefix + "a").encode(), b"1"),
        ((etcd_prefix + "b").encode(), b"2"),
    ]
    keys_only = await etcd_client.range(etcd_prefix, prefix_end(etcd_prefix), keys_only=True)
    assert [k.value for k in keys_only.kvs] == [b"", b""]

    assert (await etcd_client.delete(etcd_prefix + "a")).deleted == 1
    assert await etcd_client.get(etcd_prefix + "a") is None
    assert await etcd_client.delete_prefix(etcd_prefix) == 1


async def test_nested_txns_acquire_many_keys_in_one_round_trip(
    etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    keys = [f"{etcd_prefix}lease/{i}" for i in range(20)]
    await etcd_client.put(keys[3], "someone-else")

    def acquire(holder: str):  # the lease layer's create-if-absent-else-read, per key
        return txn_request(
            success=[
                txn_op(
                    [compare_create_revision(k, "=", 0)],
                    [put_op(k, holder)],
                    [range_op(k)],
                )
                for k in keys
            ]
        )

    before = etcd_client.round_trips
    reply = await etcd_client.txn(acquire("me"))
    assert etcd_client.round_trips == before + 1
    assert reply.succeeded
    results = [r.response_txn for r in reply.responses]
    assert len(results) == len(keys)
    acquired = [i for i, r in enumerate(results) if r.succeeded]
    assert acquired == [i for i in range(len(keys)) if i != 3]
    assert results[3].responses[0].response_range.kvs[0].value == b"someone-else"

    # Every key created by the txn has the txn's revision as its fencing token.
    first = await etcd_client.get(keys[0])
    assert first is not None and first.create_revision == reply.header.revision

    # A second holder gets every key back as "held", with the first holder's value.
    again = await etcd_client.txn(acquire("other"))
    assert not any(r.response_txn.succeeded for r in again.responses)
    held = {r.response_txn.responses[0].response_range.kvs[0].value for r in again.responses}
    assert held == {b"me", b"someone-else"}


async def test_txn_failure_branch(etcd_client: EtcdClient, etcd_prefix: str) -> None:
    key = etcd_prefix + "k"
    await etcd_client.put(key, "v1")
    reply = await etcd_client.txn(
        txn_request([compare_value(key, "=", "other")], [put_op(key, "v2")], [range_op(key)])
    )
    assert not reply.succeeded
    assert reply.responses[0].response_range.kvs[0].value == b"v1"


async def test_range_prefix_paginates_one_snapshot(
    etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    keys = [f"{etcd_prefix}{i:03d}".encode() for i in range(25)]
    for k in keys:
        await etcd_client.put(k, b"x")
    before = etcd_client.round_trips
    seen = []
    async for kv in etcd_client.range_prefix(etcd_prefix, page_size=7):
        seen.append(kv.key)
        if len(seen) == 1:
            # Written after the first page: invisible to this listing's revision.
            await etcd_client.put(f"{etcd_prefix}999", b"late")
    assert seen == keys
    assert etcd_client.round_trips - before == 4 + 1  # ceil(25 / 7) pages + the late put
    with pytest.raises(ValueError):
        async for _ in etcd_client.range_prefix(etcd_prefix, page_size=0):
            pass


async def test_lease_keepalive_and_expiry(etcd_client: EtcdClient, etcd_prefix: str) -> None:
    key = etcd_prefix + "owned"
    lease_id, ttl = await etcd_client.grant_lease(1)
    assert lease_id > 0 and ttl == 1
    await etcd_client.put(key, "holder", lease=lease_id)
    assert await etcd_client.keepalive_once(lease_id) == 1
    info = await etcd_client.lease_time_to_live(lease_id, keys=True)
    assert info.grantedTTL == 1 and list(info.keys) == [key.encode()]
    assert lease_id in await etcd_client.leases()

    async with asyncio.timeout(WAIT):  # no more keepalives: etcd expires it
        while True:
            if (await etcd_client.lease_time_to_live(lease_id)).TTL == -1:
                break
            await asyncio.sleep(0.1)
    assert await etcd_client.keepalive_once(lease_id) <= 0
    assert await etcd_client.get(key) is None
    with pytest.raises(EtcdLeaseNotFound):
        await etcd_client.put(key, "late", lease=lease_id)


async def test_revoke_lease_deletes_keys(etcd_client: EtcdClient, etcd_prefix: str) -> None:
    lease_id, _ = await etcd_client.grant_lease(30)
    await etcd_client.put(etcd_prefix + "k", "v", lease=lease_id)
    assert await etcd_client.revoke_lease(lease_id) is True
    assert await etcd_client.get(etcd_prefix + "k") is None
    assert await etcd_client.revoke_lease(lease_id) is False


async def test_concurrent_keepalives_pair_replies(etcd_client: EtcdClient) -> None:
    leases = [await etcd_client.grant_lease(ttl) for ttl in (5, 10, 15, 20)]
    ttls = await asyncio.gather(*(etcd_client.keepalive_once(lid) for lid, _ in leases * 3))
    assert ttls == [ttl for _, ttl in leases] * 3
    for lid, _ in leases:
        await etcd_client.revoke_lease(lid)


async def _collect(events, count: int) -> list[kv_pb2.Event]:
    out: list[kv_pb2.Event] = []
    async with asyncio.timeout(WAIT):
        async for event in events:
            out.append(event)
            if len(out) == count:
                break
    return out


async def test_watch_sees_puts_and_deletes(etcd_client: EtcdClient, etcd_prefix: str) -> None:
    start = (await etcd_client.status()).header.revision + 1
    watch = etcd_client.watch(etcd_prefix, prefix_end(etcd_prefix), start_revision=start)
    await etcd_client.put(etcd_prefix + "a", "1")
    await etcd_client.put("/elsewhere/" + etcd_prefix, "not watched")
    await etcd_client.delete(etcd_prefix + "a")
    events = await _collect(watch, 2)
    assert [(e.type, e.kv.key) for e in events] == [
        (kv_pb2.Event.PUT, (etcd_prefix + "a").encode()),
        (kv_pb2.Event.DELETE, (etcd_prefix + "a").encode()),
    ]
    assert events[0].kv.value == b"1"


async def test_watch_from_now_skips_history(etcd_client: EtcdClient, etcd_prefix: str) -> None:
    await etcd_client.put(etcd_prefix + "old", "x")
    watch = etcd_client.watch(etcd_prefix + "new")
    task = asyncio.ensure_future(_collect(watch, 1))
    # The watch is created asynchronously: keep writing until it reports one event.
    async with asyncio.timeout(WAIT):
        while not task.done():
            await etcd_client.put(etcd_prefix + "new", "y")
            await asyncio.wait([task], timeout=0.2)
    [event] = task.result()
    assert event.kv.key == (etcd_prefix + "new").encode()


async def test_raw_stubs_share_interceptor(etcd_client: EtcdClient, etcd_prefix: str) -> None:
    from mobkit.gen.etcd.api.etcdserverpb import rpc_pb2

    before = etcd_client.round_trips
    await etcd_client.kv.Put(rpc_pb2.PutRequest(key=(etcd_prefix + "raw").encode(), value=b"v"))
    assert etcd_client.round_trips == before + 1
    with pytest.raises(EtcdError) as info:
        await etcd_client.kv.Put(rpc_pb2.PutRequest(key=b"", value=b"v"))
    assert info.value.code == "INVALID_ARGUMENT"
    assert not isinstance(info.value, EtcdUnavailable)


async def test_status_and_members(etcd_client: EtcdClient) -> None:
    status = await etcd_client.status()
    assert status.version.startswith("3.")
    assert status.leader != 0
    members = await etcd_client.member_list()
    assert len(members.members) == 1


# -- against a private etcd (compaction, failures) -----------------------------------


async def test_compacted_history(etcd: EtcdProcess) -> None:
    async with await EtcdClient.connect([etcd.endpoint]) as client:
        first = (await client.put("/c/k", "1")).header.revision
        latest = (await client.put("/c/k", "2")).header.revision
        await client.compact(latest)
        with pytest.raises(EtcdCompacted):
            await client.range("/c/k", revision=first)
        with pytest.raises(EtcdCompacted) as info:
            await _collect(client.watch("/c/k", start_revision=first), 1)
        assert info.value.compact_revision == latest


async def test_unreachable_etcd_raises_unavailable_within_deadline(etcd: EtcdProcess) -> None:
    async with await EtcdClient.connect([etcd.endpoint], timeout=1.0) as client:
        await client.put("/u/k", "v")
        etcd.kill()
        async with asyncio.timeout(5):  # bounded well beyond the 1 s deadline
            with pytest.raises(EtcdUnavailable):
                await client.put("/u/k", "v2")
            with pytest.raises(EtcdUnavailable):
                await client.range("/u/k")
            with pytest.raises(EtcdUnavailable):
                await client.keepalive_once(1)


async def test_hung_etcd_raises_unavailable_at_deadline(etcd: EtcdMember) -> None:
    async with await EtcdClient.connect([etcd.endpoint], timeout=1.0) as client:
        await client.put("/h/k", "v")
        etcd.pause()
        try:
            async with asyncio.timeout(5):
                with pytest.raises(EtcdUnavailable) as info:
                    await client.put("/h/k", "v2")
                assert info.value.code == "DEADLINE_EXCEEDED"
                with pytest.raises(EtcdUnavailable):
                    await client.keepalive_once(1, timeout=0.5)
        finally:
            etcd.resume()


async def test_watch_and_keepalive_survive_restart(etcd: EtcdProcess) -> None:
    async with await EtcdClient.connect([etcd.endpoint]) as client:
        lease_id, _ = await client.grant_lease(30)
        start = (await client.put("/w/a", "1")).header.revision
        watch = client.watch("/w/", prefix_end("/w/"), start_revision=start)
        [first] = await _collect(watch, 1)
        assert first.kv.value == b"1"

        await etcd.restart_async(graceful=False)
        await client.put("/w/b", "2")
        [second] = await _collect(watch, 1)
        assert (second.kv.key, second.kv.value) == (b"/w/b", b"2")  # nothing lost or repeated
        assert await client.keepalive_once(lease_id) > 0
