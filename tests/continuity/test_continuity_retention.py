"""Receipts kept beside checkpoints for a time, and snapshots stored as content-defined
chunks, on every backend (fixture ``h``: memory, SQLite, etcd, each also behind gRPC)."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from continuity_support import Harness, checkpoint, make_harness, record, snapshot

from mobkit.continuity import chunking
from mobkit.continuity.codec import (
    CHUNKS,
    RECEIPTS,
    chunk_key,
    decode_stored_snapshot,
    snapshot_key,
)
from mobkit.continuity.domain import TurnReceipt
from mobkit.continuity.etcd_backend import EtcdContinuityStore
from mobkit.continuity.sqlite_backend import SqliteContinuityStore
from mobkit.core.errors import InvalidArgument, StaleCheckpointVersion, StoreCorruption
from mobkit.core.types import Broken, ContinuityFailureKind, Ready, SessionSnapshot
from mobkit.testing.suite import until

MIB = 1024 * 1024


async def _fenced(h: Harness, identity: str = "planner", session: str = "s-1") -> int:
    token = await h.token(identity)
    await h.store.upsert_continuity_record(record(identity, session), token)
    return token


def _keys(dump: dict[bytes, bytes], h: Harness, kind: bytes) -> set[bytes]:
    prefix = h.engine.etcd_key(kind) if isinstance(h.engine, EtcdContinuityStore) else kind
    return {k[len(prefix) - len(kind) :] for k in dump if k.startswith(prefix)}


# -- receipts ----------------------------------------------------------------------------


async def test_a_receipt_commits_with_its_checkpoint_and_is_found_by_its_key(h: Harness) -> None:
    token = await _fenced(h)
    assert await h.store.load_receipt("planner", "key-1") is None
    receipt = TurnReceipt("key-1", b'{"output": "done"}')
    await h.store.save_session_snapshot(checkpoint(snapshot("a"), version=1, token=token), receipt)
    found = await h.store.load_receipt("planner", "key-1")
    assert found is not None and found.data == receipt.data
    assert found.expires_at_ms > 0
    # Keys are per identity.
    assert await h.store.load_receipt("reviewer", "key-1") is None


async def test_a_refused_save_stores_no_receipt(h: Harness) -> None:
    token = await _fenced(h)
    await h.store.save_session_snapshot(checkpoint(snapshot("a"), version=1, token=token))
    with pytest.raises(StaleCheckpointVersion):
        await h.store.save_session_snapshot(
            checkpoint(snapshot("b"), version=1, token=token), TurnReceipt("k", b"x")
        )
    assert await h.store.load_receipt("planner", "k") is None


async def test_a_receipt_outlives_a_thousand_later_keyed_saves(h: Harness) -> None:
    token = await _fenced(h)
    first = TurnReceipt("the-first", b"first answer")
    await h.store.save_session_snapshot(checkpoint(snapshot("v1"), version=1, token=token), first)
    for version in range(2, 1002):
        await h.store.save_session_snapshot(
            checkpoint(snapshot(f"v{version}"), version=version, token=token),
            TurnReceipt(f"key-{version}", b"later answer"),
        )
    found = await h.store.load_receipt("planner", "the-first")
    assert found is not None and found.data == b"first answer"


async def test_a_receipt_past_its_retention_answers_nothing(h: Harness) -> None:
    now = [1_000_000.0]
    h.engine.clock = lambda: now[0]
    h.engine.receipt_retention = 60.0
    token = await _fenced(h)
    await h.store.save_session_snapshot(
        checkpoint(snapshot("a"), version=1, token=token), TurnReceipt("k", b"x")
    )
    now[0] += 59
    assert await h.store.load_receipt("planner", "k") is not None
    now[0] += 2
    assert await h.store.load_receipt("planner", "k") is None


@pytest.mark.parametrize(
    "key", ["", "k" * 1025, "\udcff"], ids=["empty", "too-long", "lone-surrogate"]
)
async def test_a_bad_idempotency_key_is_invalid_argument_and_changes_nothing(
    h: Harness, key: str
) -> None:
    token = await _fenced(h)
    if key == "\udcff" and h.name.startswith("grpc-"):
        pytest.skip("a lone surrogate cannot be encoded into a gRPC request")
    with pytest.raises(InvalidArgument) as info:
        await h.store.save_session_snapshot(
            checkpoint(snapshot("a"), version=1, token=token), TurnReceipt(key, b"x")
        )
    assert info.value.metadata["field"] == "receipt.idempotency_key"
    with pytest.raises(InvalidArgument):
        await h.store.load_receipt("planner", key)
    state = (await h.store.resolve_many(["planner"]))[0][1]
    assert isinstance(state, Ready) and state.record.checkpoint_version == 0


async def test_deleting_the_record_deletes_its_receipts_and_chunks(h: Harness) -> None:
    token = await _fenced(h)
    data = os.urandom(4 * chunking.INLINE_MAX_BYTES)
    await h.store.save_session_snapshot(
        checkpoint(snapshot(data), version=1, token=token), TurnReceipt("k", b"x")
    )
    dump = await h.dump()
    assert _keys(dump, h, RECEIPTS) and _keys(dump, h, CHUNKS)
    await h.store.delete_continuity_record("planner", token)
    dump = await h.dump()
    assert not _keys(dump, h, RECEIPTS) and not _keys(dump, h, CHUNKS)
    assert await h.store.load_receipt("planner", "k") is None


# -- chunked snapshots --------------------------------------------------------------------

BIG_BACKENDS = ["memory", "sqlite", "etcd", "grpc-sqlite", "grpc-etcd"]


@pytest_asyncio.fixture(params=BIG_BACKENDS)
async def big(
    request: pytest.FixtureRequest, tmp_path: Path, etcd_prefix: str
) -> AsyncIterator[Harness]:
    """The harness with the default 64 MiB snapshot limit."""
    name: str = request.param
    endpoint = request.getfixturevalue("etcd_session").endpoint if "etcd" in name else None
    harness = await make_harness(name, tmp_path, endpoint, etcd_prefix, snapshot_limit=64 * MIB)
    try:
        yield harness
    finally:
        for cleanup in reversed(harness.cleanups):
            await cleanup()


def _referenced(dump: dict[bytes, bytes], h: Harness, session: str = "s-1") -> set[bytes]:
    value = dump[_raw_key(h, snapshot_key("planner", session))]
    return {chunk_key("planner", session, ref) for ref in decode_stored_snapshot(value).chunks}


def _raw_key(h: Harness, key: bytes) -> bytes:
    return h.engine.etcd_key(key) if isinstance(h.engine, EtcdContinuityStore) else key


async def test_a_32_mib_snapshot_round_trips_byte_for_byte(big: Harness) -> None:
    token = await _fenced(big)
    data = random.Random(7).randbytes(32 * MIB)
    revision = await big.store.save_session_snapshot(
        checkpoint(SessionSnapshot(data), version=1, token=token)
    )
    loaded = await big.store.load_session_snapshot("s-1")
    assert loaded is not None and loaded.snapshot.data == data and loaded.revision == revision
    state = (await big.store.resolve_many(["planner"]))[0][1]
    assert isinstance(state, Ready) and state.record.checkpoint_version == 1
    dump = await big.dump()
    assert _keys(dump, big, CHUNKS) == _referenced(dump, big)
    assert len(_referenced(dump, big)) >= 32 * MIB // chunking.MAX_CHUNK_BYTES


async def test_appending_to_a_large_snapshot_writes_only_what_changed(big: Harness) -> None:
    token = await _fenced(big)
    state = bytearray(random.Random(3).randbytes(8 * MIB))
    await big.store.save_session_snapshot(
        checkpoint(SessionSnapshot(bytes(state)), version=1, token=token)
    )
    for version in range(2, 7):
        state += b"note %03d." % version  # ten bytes, like a notebook's new note
        before = big.engine.bytes_written
        await big.store.save_session_snapshot(
            checkpoint(SessionSnapshot(bytes(state)), version=version, token=token)
        )
        written = big.engine.bytes_written - before
        assert written <= 128 * 1024, f"turn {version} wrote {written} bytes for a 10-byte change"
    loaded = await big.store.load_session_snapshot("s-1")
    assert loaded is not None and loaded.snapshot.data == bytes(state)
    dump = await big.dump()
    # What the last manifest stopped naming is gone with the commit.
    assert _keys(dump, big, CHUNKS) == _referenced(dump, big)


async def test_an_insertion_in_the_middle_rewrites_only_nearby_chunks(big: Harness) -> None:
    token = await _fenced(big)
    data = random.Random(5).randbytes(4 * MIB)
    await big.store.save_session_snapshot(checkpoint(SessionSnapshot(data), version=1, token=token))
    before = big.engine.bytes_written
    changed = data[: 2 * MIB] + b"inserted!" + data[2 * MIB :]
    await big.store.save_session_snapshot(
        checkpoint(SessionSnapshot(changed), version=2, token=token)
    )
    assert big.engine.bytes_written - before <= 4 * chunking.MAX_CHUNK_BYTES
    loaded = await big.store.load_session_snapshot("s-1")
    assert loaded is not None and loaded.snapshot.data == changed


async def test_a_corrupted_chunk_fails_the_load_with_store_corruption(big: Harness) -> None:
    token = await _fenced(big)
    data = random.Random(11).randbytes(2 * MIB)
    await big.store.save_session_snapshot(checkpoint(SessionSnapshot(data), version=1, token=token))
    dump = await big.dump()
    victim = sorted(_referenced(dump, big))[3]
    stored = bytearray(dump[_raw_key(big, victim)])
    stored[100] ^= 0xFF
    await big.raw_put(victim, bytes(stored))
    with pytest.raises(StoreCorruption) as info:
        await big.store.load_session_snapshot("s-1")
    assert "SHA-256 mismatch" in info.value.message
    await big.raw_put(victim, b"")  # a chunk cut short fails the same way
    with pytest.raises(StoreCorruption):
        await big.store.load_session_snapshot("s-1")


async def test_a_corrupted_manifest_resolves_broken_snapshot_corrupted(big: Harness) -> None:
    token = await _fenced(big)
    data = random.Random(13).randbytes(MIB)
    await big.store.save_session_snapshot(checkpoint(SessionSnapshot(data), version=1, token=token))
    key = snapshot_key("planner", "s-1")
    stored = bytearray((await big.raw_get(key)) or b"")
    stored[-5] ^= 0x01  # inside the manifest
    await big.raw_put(key, bytes(stored))
    state = (await big.store.resolve_many(["planner"]))[0][1]
    assert isinstance(state, Broken)
    assert state.failure.kind is ContinuityFailureKind.SNAPSHOT_CORRUPTED


async def test_shrinking_below_the_inline_size_drops_every_chunk(big: Harness) -> None:
    token = await _fenced(big)
    await big.store.save_session_snapshot(
        checkpoint(SessionSnapshot(os.urandom(3 * MIB)), version=1, token=token)
    )
    await big.store.save_session_snapshot(checkpoint(snapshot("tiny"), version=2, token=token))
    assert not _keys(await big.dump(), big, CHUNKS)
    loaded = await big.store.load_session_snapshot("s-1")
    assert loaded is not None and loaded.snapshot.data == b"tiny"


async def test_collection_removes_chunks_no_snapshot_references(big: Harness) -> None:
    token = await _fenced(big)
    data = os.urandom(MIB)
    await big.store.save_session_snapshot(checkpoint(SessionSnapshot(data), version=1, token=token))
    orphan = chunk_key("planner", "s-1", chunking.ChunkRef(b"\x01" * 32, 5))
    await big.raw_put(orphan, b"stray")  # as a save that died before its commit leaves
    assert orphan in _keys(await big.dump(), big, CHUNKS)
    assert await big.engine.collect_garbage("planner") == 1
    dump = await big.dump()
    assert _keys(dump, big, CHUNKS) == _referenced(dump, big)
    loaded = await big.store.load_session_snapshot("s-1")
    assert loaded is not None and loaded.snapshot.data == data


async def test_a_new_owner_collects_what_its_predecessor_left(big: Harness) -> None:
    token = await _fenced(big)
    await big.store.save_session_snapshot(
        checkpoint(SessionSnapshot(os.urandom(MIB)), version=1, token=token)
    )
    orphan = chunk_key("planner", "s-1", chunking.ChunkRef(b"\x02" * 32, 5))
    await big.raw_put(orphan, b"stray")
    successor = await big.token("planner")
    await big.store.upsert_continuity_record(record("planner", "s-1", version=1), successor)

    async def collected() -> bool:
        return orphan not in _keys(await big.dump(), big, CHUNKS)

    await until(collected, "the orphaned chunk collected", timeout=10.0)


async def test_the_sqlite_sweep_deletes_expired_receipts(tmp_path: Path) -> None:
    now = [1_000_000.0]
    store = await SqliteContinuityStore.open(
        tmp_path / "c.sqlite3", receipt_retention=10.0, clock=lambda: now[0]
    )
    try:
        store.sweep_interval = 0.0
        await store.upsert_continuity_record(record(), 1)
        for version in (1, 2):
            await store.save_session_snapshot(
                checkpoint(snapshot("a"), version=version, token=1),
                TurnReceipt(f"k{version}", b"x"),
            )
            now[0] += 6
        # k1 is past its retention, k2 is not; the next transaction sweeps k1.
        await store.save_session_snapshot(checkpoint(snapshot("b"), version=3, token=1))
    finally:
        await store.close()
    import sqlite3

    conn = sqlite3.connect(tmp_path / "c.sqlite3")
    rows = conn.execute(
        "SELECT count(*) FROM continuity_kv WHERE key >= ? AND key < ?",
        (RECEIPTS, RECEIPTS[:-1] + b"0"),
    ).fetchone()[0]
    conn.close()
    assert rows == 1


async def test_etcd_drops_expired_receipts_with_their_bucket_lease(
    etcd_session: object, etcd_prefix: str, tmp_path: Path
) -> None:
    harness = await make_harness(
        "etcd",
        tmp_path,
        etcd_session.endpoint,
        etcd_prefix,  # type: ignore[attr-defined]
    )
    try:
        engine = harness.engine
        engine.receipt_retention = 2.0
        token = await _fenced(harness)
        await harness.store.save_session_snapshot(
            checkpoint(snapshot("a"), version=1, token=token), TurnReceipt("k", b"x")
        )
        assert _keys(await harness.dump(), harness, RECEIPTS)

        async def dropped() -> bool:
            return not _keys(await harness.dump(), harness, RECEIPTS)

        # Retention (2 s) plus one bucket (1 s) plus etcd's lease checks.
        await until(dropped, "etcd dropping the expired receipt", timeout=15.0)
        state = (await harness.store.resolve_many(["planner"]))[0][1]
        assert isinstance(state, Ready) and state.record.checkpoint_version == 1
    finally:
        for cleanup in reversed(harness.cleanups):
            await cleanup()


async def test_concurrent_saves_and_collections_never_lose_a_referenced_chunk(
    big: Harness,
) -> None:
    token = await _fenced(big)
    rng = random.Random(17)
    state = bytearray(rng.randbytes(2 * MIB))
    stop = asyncio.Event()

    async def collect() -> None:
        while not stop.is_set():
            await big.engine.collect_garbage("planner")
            await asyncio.sleep(0)

    collector = asyncio.create_task(collect())
    try:
        for version in range(1, 16):
            at = rng.randrange(len(state))
            state[at:at] = rng.randbytes(rng.randrange(1, 40_000))
            await big.store.save_session_snapshot(
                checkpoint(SessionSnapshot(bytes(state)), version=version, token=token)
            )
            loaded = await big.store.load_session_snapshot("s-1")
            assert loaded is not None and loaded.snapshot.data == bytes(state)
    finally:
        stop.set()
        await collector
    await big.engine.collect_garbage("planner")
    dump = await big.dump()
    assert _keys(dump, big, CHUNKS) == _referenced(dump, big)


async def test_a_full_sqlite_disk_is_backend_full_and_recovers(tmp_path: Path) -> None:
    from mobkit.core.errors import BackendFull

    store = await SqliteContinuityStore.open(tmp_path / "c.sqlite3")
    told: list[str | None] = []
    store.on_full = told.append
    store.on_recovered = lambda: told.append(None)
    loop = asyncio.get_running_loop()

    def pages(limit: int) -> None:  # on the connection's thread, like every statement
        store._conn.execute(f"PRAGMA max_page_count={limit}")

    try:
        await store.upsert_continuity_record(record(), 1)
        await store.save_session_snapshot(checkpoint(snapshot("kept"), version=1, token=1))
        (used,) = await loop.run_in_executor(
            store._executor, lambda: store._conn.execute("PRAGMA page_count").fetchone()
        )
        await loop.run_in_executor(store._executor, pages, used + 2)
        with pytest.raises(BackendFull) as info:
            await store.save_session_snapshot(
                checkpoint(SessionSnapshot(os.urandom(4 * MIB)), version=2, token=1)
            )
        assert info.value.reason == "BACKEND_FULL" and info.value.backend == "sqlite"
        assert len(told) == 1 and told[0] is not None and "full" in told[0]
        loaded = await store.load_session_snapshot("s-1")
        assert loaded is not None and loaded.snapshot.data == b"kept"  # nothing half-written
        await loop.run_in_executor(store._executor, pages, 1_000_000)  # space freed
        await store.save_session_snapshot(
            checkpoint(SessionSnapshot(b"after"), version=2, token=1), TurnReceipt("k", b"r")
        )
        assert (await store.load_receipt("planner", "k")) is not None
        assert told[-1] is None  # recovered, once
    finally:
        await store.close()


async def test_a_full_sqlite_disk_shows_in_the_process_conditions(tmp_path: Path) -> None:
    """What health (NOT_SERVING), the metric and `mobkit status` follow."""
    from mobkit.continuity.service import open_store
    from mobkit.core.errors import BackendFull
    from mobkit.server.config import Settings
    from mobkit.server.resources import Resources

    settings = Settings(continuity_backend="sqlite", sqlite_path=str(tmp_path / "c.sqlite3"))
    resources = Resources(settings)
    store = await open_store(settings, resources)
    assert isinstance(store, SqliteContinuityStore)
    loop = asyncio.get_running_loop()
    try:
        await store.upsert_continuity_record(record(), 1)
        (used,) = await loop.run_in_executor(
            store._executor, lambda: store._conn.execute("PRAGMA page_count").fetchone()
        )
        await loop.run_in_executor(
            store._executor, store._conn.execute, f"PRAGMA max_page_count={used + 2}"
        )
        with pytest.raises(BackendFull):
            await store.save_session_snapshot(
                checkpoint(SessionSnapshot(os.urandom(4 * MIB)), version=1, token=1)
            )
        assert [c.backend for c in resources.conditions.current()] == ["sqlite"]
        assert resources.conditions.degraded
        await loop.run_in_executor(
            store._executor, store._conn.execute, "PRAGMA max_page_count=1000000"
        )
        await store.save_session_snapshot(checkpoint(snapshot("fits"), version=1, token=1))
        assert not resources.conditions.degraded
    finally:
        await store.close()
        await resources.close()


async def test_etcd_holds_a_snapshot_at_the_default_64_mib_limit(
    etcd_client: object, etcd_prefix: str
) -> None:
    from mobkit.core.errors import SnapshotTooLarge

    store = EtcdContinuityStore(etcd_client, prefix=etcd_prefix)  # type: ignore[arg-type]
    store.lease_fence = False
    assert store.snapshot_limit_bytes == 64 * MIB  # the default
    await store.upsert_continuity_record(record(), 1)
    data = random.Random(64).randbytes(64 * MIB)
    with pytest.raises(SnapshotTooLarge):
        await store.save_session_snapshot(
            checkpoint(SessionSnapshot(data + b"!"), version=1, token=1)
        )
    await store.save_session_snapshot(checkpoint(SessionSnapshot(data), version=1, token=1))
    loaded = await store.load_session_snapshot("s-1")
    assert loaded is not None and loaded.snapshot.data == data
    await store.delete_continuity_record("planner", 1)  # and its 64 MiB of chunks
