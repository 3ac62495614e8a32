"""What only the etcd engine does: the lease fence inside the write txn, CAS retries,
O(pages) batch reads, the request-size limit, and an etcd outage."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from continuity_support import checkpoint, record, snapshot

from mobkit.continuity.client import GrpcContinuityStore
from mobkit.continuity.codec import RecordState, encode_record, record_key
from mobkit.continuity.etcd_backend import EtcdContinuityStore
from mobkit.core.errors import (
    BackendUnavailable,
    GenerationMismatch,
    InvalidArgument,
    StaleCheckpointVersion,
    StaleFencingToken,
    StoreUnavailable,
)
from mobkit.core.identity import AgentIdentity
from mobkit.core.types import Ready, SyncWriteThrough, Uninitialized
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.ops import put_op, txn_request
from mobkit.etcd.process import EtcdProcess
from mobkit.server.config import Settings
from mobkit.server.host import start_services
from mobkit.server.resources import Resources

pytestmark = pytest.mark.timeout(90)

ID = "planner"


@pytest_asyncio.fixture
async def store(etcd_client: EtcdClient, etcd_prefix: str) -> EtcdContinuityStore:
    return EtcdContinuityStore(etcd_client, prefix=etcd_prefix)


async def take_lease(store: EtcdContinuityStore, identity: str = ID) -> int:
    """What the lease service does for a new holder: (re)create the lease key."""
    await store.client.delete(store.lease_key(identity))
    reply = await store.client.put(store.lease_key(identity), b"holder")
    return int(reply.header.revision)


async def test_keys_live_under_the_shared_prefix(
    store: EtcdContinuityStore, etcd_prefix: str
) -> None:
    token = await take_lease(store)
    await store.upsert_continuity_record(record(), token)
    await store.save_session_snapshot(checkpoint(snapshot("x"), version=1, token=token))
    root = etcd_prefix.rstrip("/")
    keys = sorted([bytes(kv.key) async for kv in store.client.range_prefix(root + "/")])
    assert keys == [
        f"{root}/continuity/records/{ID}".encode(),
        f"{root}/continuity/sessions/s-1".encode(),
        f"{root}/continuity/snapshots/{ID}/s-1".encode(),
        f"{root}/leases/{ID}".encode(),
    ]


async def test_lease_fence_rejects_a_writer_whose_lease_moved_before_any_new_write(
    store: EtcdContinuityStore,
) -> None:
    a = await take_lease(store)
    await store.upsert_continuity_record(record(), a)
    await store.save_session_snapshot(checkpoint(snapshot("A1"), version=1, token=a))
    b = await take_lease(store)  # B holds the lease but has written nothing yet
    with pytest.raises(StaleFencingToken) as info:
        await store.save_session_snapshot(checkpoint(snapshot("A2"), version=2, token=a))
    assert info.value.metadata == {"identity": ID, "presented": str(a), "current": str(b)}
    # Lease released or expired: nobody may write, current = 0.
    await store.client.delete(store.lease_key(ID))
    with pytest.raises(StaleFencingToken) as info:
        await store.upsert_continuity_record(record(version=1), a)
    assert info.value.metadata["current"] == "0"
    with pytest.raises(StaleFencingToken):
        await store.upsert_continuity_record(record(version=1), b)
    [(_, state)] = await store.resolve_many([ID])
    assert state == Ready(record(version=1))


async def test_lease_is_checked_in_the_same_txn_as_the_write(
    store: EtcdContinuityStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await take_lease(store)
    await store.upsert_continuity_record(record(), a)
    real_commit = store._commit
    moved: list[int] = []

    async def commit_after_the_lease_moves(commit: Any, reader: Any) -> bool:
        if not moved:  # the lease changes hands between our read and our txn
            moved.append(await take_lease(store))
        return await real_commit(commit, reader)

    monkeypatch.setattr(store, "_commit", commit_after_the_lease_moves)
    with pytest.raises(StaleFencingToken) as info:
        await store.save_session_snapshot(checkpoint(snapshot("late"), version=1, token=a))
    assert info.value.metadata["current"] == str(moved[0])
    assert await store.load_session_snapshot("s-1") is None


async def test_a_conflicting_write_makes_the_operation_decide_again(
    store: EtcdContinuityStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await take_lease(store)
    await store.upsert_continuity_record(record(), token)
    other = EtcdContinuityStore(
        store.client, prefix=store.namespace.decode()[: -len("continuity/")]
    )
    real_commit = store._commit
    calls: list[int] = []

    async def commit_after_a_competitor(commit: Any, reader: Any) -> bool:
        calls.append(1)
        if len(calls) == 1:  # a competitor commits version 5 between our read and txn
            await other.save_session_snapshot(checkpoint(snapshot("five"), version=5, token=token))
        return await real_commit(commit, reader)

    monkeypatch.setattr(store, "_commit", commit_after_a_competitor)
    await store.save_session_snapshot(checkpoint(snapshot("seven"), version=7, token=token))
    assert len(calls) == 2  # first txn failed its compare, the retry committed
    loaded = await store.load_session_snapshot("s-1")
    assert loaded is not None and (loaded.checkpoint_version, loaded.snapshot.data) == (7, b"seven")
    calls.clear()
    # Decided again, a now-stale version is refused instead of overwriting.
    with pytest.raises(StaleCheckpointVersion):
        await store.save_session_snapshot(checkpoint(snapshot("six"), version=6, token=token))


async def test_writers_racing_with_lease_handovers(store: EtcdContinuityStore) -> None:
    tokens = [await take_lease(store)]
    await store.upsert_continuity_record(record(), tokens[0])
    versions = itertools.count(1)
    accepted: list[tuple[int, int]] = []

    async def writer(token: int) -> None:
        for _ in range(5):
            version = next(versions)
            try:
                await store.save_session_snapshot(
                    checkpoint(snapshot(f"{token}:{version}"), version=version, token=token)
                )
            except StaleFencingToken as exc:
                current = int(exc.metadata["current"])
                assert current > token or current == 0  # 0: between release and acquire
            except StaleCheckpointVersion:
                pass
            else:
                accepted.append((version, token))
            await asyncio.sleep(0)

    writers = [asyncio.create_task(writer(tokens[0]))]
    for _ in range(10):  # the lease changes hands while earlier holders keep writing
        await asyncio.sleep(0.002)
        tokens.append(await take_lease(store))
        writers.append(asyncio.create_task(writer(tokens[-1])))
    await asyncio.gather(*writers)

    assert accepted
    in_commit_order = [token for _, token in sorted(accepted)]
    assert in_commit_order == sorted(in_commit_order)
    last_version, last_token = max(accepted)
    loaded = await store.load_session_snapshot("s-1")
    assert loaded is not None
    assert loaded.snapshot.data == f"{last_token}:{last_version}".encode()
    for token in tokens[:-1]:  # only the current holder may still write
        with pytest.raises(StaleFencingToken) as info:
            await store.save_session_snapshot(
                checkpoint(snapshot("stale"), version=10_000, token=token)
            )
        assert info.value.metadata["current"] == str(tokens[-1])
    await store.save_session_snapshot(
        checkpoint(snapshot("current"), version=10_000, token=tokens[-1])
    )


# -- the write-path cache -------------------------------------------------------------------


@pytest_asyncio.fixture
async def pair(etcd_client: EtcdClient, etcd_prefix: str) -> tuple[Any, Any]:
    """Two replicas of the store on one etcd (each with its own cache), no lease fence."""
    return tuple(
        EtcdContinuityStore(etcd_client, prefix=etcd_prefix, lease_fence=False) for _ in "ab"
    )


async def test_steady_saves_cost_one_round_trip(store: EtcdContinuityStore) -> None:
    token = await take_lease(store)
    await store.upsert_continuity_record(record(), token)
    before = store.client.round_trips
    for version in range(1, 11):
        await store.save_session_snapshot(
            checkpoint(snapshot(f"v{version}"), version=version, token=token)
        )
    assert store.client.round_trips - before == 10


async def test_concurrent_saves_share_txns_and_each_keeps_its_own_compares(
    store: EtcdContinuityStore,
) -> None:
    ids = [f"w-{i:02d}" for i in range(24)]
    tokens = {i: await take_lease(store, i) for i in ids}
    for i in ids:
        await store.upsert_continuity_record(record(i, f"s-{i}"), tokens[i])
    # Two saves of one identity's same version race among the others: one of them must
    # lose (its compare fails inside the shared txn) without failing its neighbours.
    stale = ids[0]
    before, grouped = store.client.round_trips, store.grouped_txns
    outcomes = await asyncio.gather(
        *(
            store.save_session_snapshot(
                checkpoint(snapshot(i), identity=i, session_id=f"s-{i}", version=1, token=tokens[i])
            )
            for i in ids
        ),
        store.save_session_snapshot(
            checkpoint(
                snapshot("B"),
                identity=stale,
                session_id=f"s-{stale}",
                version=1,
                token=tokens[stale],
            )
        ),
        return_exceptions=True,
    )
    assert store.grouped_txns > grouped
    assert store.client.round_trips - before < len(ids)
    assert all(isinstance(o, str) for o in outcomes[1:-1])
    assert sum(isinstance(o, StaleCheckpointVersion) for o in (outcomes[0], outcomes[-1])) == 1
    # A save under a token that lost its lease fails alone, also in a group.
    fenced = ids[1]
    await take_lease(store, fenced)  # someone else holds it now
    outcomes = await asyncio.gather(
        *(
            store.save_session_snapshot(
                checkpoint(snapshot(i), identity=i, session_id=f"s-{i}", version=2, token=tokens[i])
            )
            for i in ids
        ),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], StaleFencingToken)
    assert all(isinstance(o, str) for i, o in enumerate(outcomes) if i != 1)
    entries = await store.resolve_many(ids)
    versions = {i: s.record.checkpoint_version for i, s in entries if isinstance(s, Ready)}
    assert versions == {i: 1 if i == fenced else 2 for i in ids}


async def test_a_no_op_on_a_stale_cache_is_not_a_success(pair: tuple[Any, Any]) -> None:
    a, b = pair
    await a.upsert_continuity_record(record(), 5)
    await b.upsert_continuity_record(record(), 9)  # same record, higher token: a cannot tell
    with pytest.raises(StaleFencingToken):
        await a.upsert_continuity_record(record(), 5)  # a no-op to a's cache
    await a.upsert_continuity_record(record("other", "s-o"), 5)
    await a.save_session_snapshot(
        checkpoint(snapshot("A1"), identity="other", session_id="s-o", version=1, token=5)
    )
    await b.upsert_continuity_record(record("other", "s-o", version=1), 9)
    with pytest.raises(StaleFencingToken):
        await a.save_session_snapshot(
            checkpoint(snapshot("A1"), identity="other", session_id="s-o", version=1, token=5)
        )  # a "retry"


async def test_a_refusal_is_never_based_on_a_stale_cache(pair: tuple[Any, Any]) -> None:
    a, b = pair
    await a.upsert_continuity_record(record(), 5)
    await a.save_session_snapshot(checkpoint(snapshot("gen0"), version=4, token=5))
    await b.upsert_continuity_record(record(session_id="s-2", gen=1), 5)  # a reset
    # a's cache still says generation 0 at checkpoint 4; the store says generation 1.
    await a.save_session_snapshot(
        checkpoint(snapshot("gen1"), session_id="s-2", gen=1, version=1, token=5)
    )
    [(_, state)] = await b.resolve_many([ID])
    assert state == Ready(record(session_id="s-2", gen=1, version=1))


async def test_activating_a_new_identity_fences_it_in_one_round_trip(
    store: EtcdContinuityStore,
) -> None:
    token = await take_lease(store)
    [(_, state)] = await store.resolve_many([ID])  # what activation does first
    assert isinstance(state, Uninitialized)
    before = store.client.round_trips
    await store.upsert_continuity_record(record(), token)
    # The record's absence is known from the resolve, the lease key is taken to be the
    # caller's and the new session's binding to be absent: one txn checks all three.
    assert store.client.round_trips - before == 1
    [(_, state)] = await store.resolve_many([ID])
    assert state == Ready(record())


async def test_wrong_guesses_cost_a_retry_never_a_wrong_answer(
    etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    store = EtcdContinuityStore(etcd_client, prefix=etcd_prefix)
    other = EtcdContinuityStore(etcd_client, prefix=etcd_prefix)
    old = await take_lease(store)
    new = await take_lease(store)  # a new owner took the lease key meanwhile
    with pytest.raises(StaleFencingToken):
        await store.upsert_continuity_record(record(), old)  # the guessed fence is wrong
    await other.upsert_continuity_record(record("other", "s-o"), await take_lease(other, "other"))
    with pytest.raises(InvalidArgument):  # the "new" session's binding exists after all
        await store.upsert_continuity_record(record(session_id="s-o"), new)
    await store.upsert_continuity_record(record(), new)
    [(_, state)] = await other.resolve_many([ID])
    assert state == Ready(record())
    # The record appeared after this store's resolve warmed its cache: still correct.
    third = EtcdContinuityStore(etcd_client, prefix=etcd_prefix)
    [(_, state)] = await third.resolve_many(["late"])
    assert isinstance(state, Uninitialized)
    late = await take_lease(third, "late")
    await other.upsert_continuity_record(record("late", "s-late", gen=1), late)
    with pytest.raises(GenerationMismatch):  # refused on what the store holds now
        await third.upsert_continuity_record(record("late", "s-late"), late)
    [(_, state)] = await other.resolve_many(["late"])
    assert state == Ready(record("late", "s-late", gen=1))


async def test_resolve_many_costs_round_trips_per_page_not_per_identity(
    etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    store = EtcdContinuityStore(etcd_client, prefix=etcd_prefix, lease_fence=False)
    ids = [f"agent-{i:05d}" for i in range(2000)]
    # Seed records directly, 100 per txn (seeding is not what is measured).
    for start in range(0, len(ids), 100):
        ops = [
            put_op(
                store.etcd_key(record_key(i)),
                encode_record(RecordState(AgentIdentity(i), record(i, f"s-{i}"), 1)),
            )
            for i in ids[start : start + 100]
        ]
        await etcd_client.txn(txn_request(success=ops))
    asked = [*ids, *(f"missing-{i}" for i in range(500))]
    before = etcd_client.round_trips
    entries = await store.resolve_many(asked)
    used = etcd_client.round_trips - before
    assert [i for i, _ in entries] == asked
    assert sum(isinstance(s, Ready) for _, s in entries) == 2000
    assert sum(isinstance(s, Uninitialized) for _, s in entries) == 500
    assert used == math.ceil(len(asked) / store.max_txn_ops)  # no snapshots at version 0


async def test_a_snapshot_limit_whose_manifest_exceeds_the_etcd_request_limit_is_refused(
    etcd_client: EtcdClient,
) -> None:
    # Snapshots are chunked, but a manifest (36 bytes per chunk of at least 4 KiB) is one
    # value: 256 MiB of chunks need a 2.3 MB manifest, beyond etcd's default 1.5 MiB.
    EtcdContinuityStore(etcd_client, snapshot_limit_bytes=64 * 1024 * 1024)
    with pytest.raises(InvalidArgument) as info:
        EtcdContinuityStore(etcd_client, snapshot_limit_bytes=256 * 1024 * 1024)
    assert info.value.metadata["field"] == "snapshot_limit_bytes"
    # With etcd started with a larger --max-request-bytes, the caller says so.
    EtcdContinuityStore(
        etcd_client, snapshot_limit_bytes=256 * 1024 * 1024, max_request_bytes=4 * 1024 * 1024
    )


# -- an etcd outage ------------------------------------------------------------------------


@pytest_asyncio.fixture
async def served(etcd: EtcdProcess, etcd_prefix: str) -> AsyncIterator[tuple[Any, Any]]:
    """The continuity service on port 0 over a per-test etcd that the test may kill."""
    settings = Settings(
        listen="127.0.0.1:0",
        continuity_backend="etcd",
        etcd_endpoints=[etcd.endpoint],
        etcd_prefix=etcd_prefix,
        grace=0.0,
    )
    resources = Resources(settings)
    server, _ = await start_services(["continuity"], settings, resources)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield (
            resources.providers["continuity"],
            GrpcContinuityStore(channel, timeout=20.0, retries=0),
        )
    finally:
        await channel.close()
        await server.stop(0)
        await resources.close()


async def test_etcd_down_is_unavailable_not_a_crash(
    etcd: EtcdProcess, served: tuple[EtcdContinuityStore, GrpcContinuityStore]
) -> None:
    engine, remote = served
    token = await take_lease(engine)
    await remote.upsert_continuity_record(record(), token)
    await remote.save_session_snapshot(checkpoint(snapshot("before"), version=1, token=token))
    etcd.kill()
    # Each call below waits for the etcd client's deadline, so only a few are made.
    with pytest.raises(StoreUnavailable):
        await engine.save_session_snapshot(checkpoint(snapshot("lost"), version=2, token=token))
    with pytest.raises(BackendUnavailable) as info:
        await remote.resolve_many([ID])
    assert info.value.reason == "BACKEND_UNAVAILABLE"
    for store in (engine, remote):
        health = await store.health(ID)
        assert not health.store_reachable and health.durability_policy == SyncWriteThrough()
    await etcd.restart_async(graceful=False)
    deadline = asyncio.get_running_loop().time() + 20
    while not (await remote.health(ID)).store_reachable:
        assert asyncio.get_running_loop().time() < deadline, "etcd never came back"
        await asyncio.sleep(0.2)
    [(_, state)] = await remote.resolve_many([ID])
    assert state == Ready(record(version=1))
    await remote.save_session_snapshot(checkpoint(snapshot("after"), version=2, token=token))
