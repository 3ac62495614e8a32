"""What only the SQLite engine does: WAL + fsync per commit, persistence across reopen,
blocking work kept off the event loop, and refusing a file that is not a store."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from continuity_support import checkpoint, record, snapshot

from mobkit.continuity.sqlite_backend import SqliteContinuityStore
from mobkit.core.errors import StaleFencingToken, StoreCorruption, StoreUnavailable
from mobkit.core.types import Ready, SyncWriteThrough

pytestmark = pytest.mark.timeout(60)

ID = "planner"


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteContinuityStore]:
    s = await SqliteContinuityStore.open(tmp_path / "data" / "continuity.sqlite3")
    try:
        yield s
    finally:
        await s.close()


async def test_wal_mode_and_fsync_on_every_commit(store: SqliteContinuityStore) -> None:
    def pragmas() -> tuple[str, int]:
        conn = store._conn
        return (
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            conn.execute("PRAGMA synchronous").fetchone()[0],
        )

    mode, synchronous = await asyncio.get_running_loop().run_in_executor(store._executor, pragmas)
    assert (mode, synchronous) == ("wal", 2)  # 2 = FULL: the WAL is fsynced at each commit
    assert (await store.health()).durability_policy == SyncWriteThrough()


async def test_state_survives_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    first = await SqliteContinuityStore.open(path)
    await first.upsert_continuity_record(record(), 3)
    revision = await first.save_session_snapshot(checkpoint(snapshot("kept"), version=1, token=3))
    await first.close()
    again = await SqliteContinuityStore.open(path)
    try:
        assert await again.resolve_many([ID]) == [(ID, Ready(record(version=1)))]
        loaded = await again.load_session_snapshot("s-1")
        assert loaded is not None and loaded.revision == revision
        found = await again.resolve_record_by_session("s-1")
        assert found is not None and found.fencing_token == 3
    finally:
        await again.close()


async def test_the_event_loop_runs_while_sqlite_waits(store: SqliteContinuityStore) -> None:
    await store.upsert_continuity_record(record(), 1)
    blocker = sqlite3.connect(store.path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        save = asyncio.create_task(
            store.save_session_snapshot(checkpoint(snapshot("waited"), version=1, token=1))
        )
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1
        # The loop kept running while the save waited for the lock on its own thread.
        assert ticks == 20 and not save.done()
        blocker.execute("COMMIT")
    finally:
        blocker.close()
    await save
    assert await store.resolve_many([ID]) == [(ID, Ready(record(version=1)))]


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "garbage.sqlite3"
    path.write_bytes(b"this is not an SQLite database, just garbage bytes" * 100)
    with pytest.raises(StoreCorruption):
        await SqliteContinuityStore.open(path)


async def test_a_closed_store_is_unavailable(tmp_path: Path) -> None:
    s = await SqliteContinuityStore.open(tmp_path / "c.sqlite3")
    await s.close()
    with pytest.raises(StoreUnavailable):
        await s.resolve_many([ID])
    assert not (await s.health()).store_reachable


async def test_concurrent_writers_share_commits_but_not_refusals(tmp_path: Path) -> None:
    path = tmp_path / "group.sqlite3"
    store = await SqliteContinuityStore.open(path)
    ids = [f"w{i:02d}" for i in range(32)]
    try:
        for identity in ids:
            await store.upsert_continuity_record(record(identity, f"s-{identity}"), 5)
        before = store.transactions
        # 32 writers at once, 3 saves each; every fourth presents a stale token once.
        outcomes = await asyncio.gather(
            *(
                store.save_session_snapshot(
                    checkpoint(
                        snapshot(identity),
                        identity=identity,
                        session_id=f"s-{identity}",
                        version=1,
                        token=4 if n % 4 == 0 else 5,
                    )
                )
                for n, identity in enumerate(ids)
            ),
            return_exceptions=True,
        )
        refused = [i for i, o in zip(ids, outcomes, strict=True) if isinstance(o, BaseException)]
        assert refused == ids[::4]
        assert all(isinstance(o, StaleFencingToken) for o in outcomes[::4])
        for version in (2, 3):
            await asyncio.gather(
                *(
                    store.save_session_snapshot(
                        checkpoint(
                            snapshot(f"{i}{version}"),
                            identity=i,
                            session_id=f"s-{i}",
                            version=version - (i in refused),
                            token=5,
                        )
                    )
                    for i in ids
                )
            )
        # 96 operations took far fewer transactions: one fsync per group, not per writer.
        assert store.transactions - before < 3 * len(ids)
    finally:
        await store.close()
    reopened = await SqliteContinuityStore.open(path)  # what was acknowledged is durable
    try:
        states = dict(await reopened.resolve_many(ids))
        for identity in ids:
            version = 2 if identity in refused else 3
            assert states[identity] == Ready(record(identity, f"s-{identity}", version=version))
            loaded = await reopened.load_session_snapshot(f"s-{identity}")
            assert loaded is not None and loaded.snapshot == snapshot(f"{identity}3")
    finally:
        await reopened.close()


async def test_a_failing_file_shows_in_the_process_conditions_until_it_works(
    tmp_path: Path,
) -> None:
    """What the continuity service's health follows (NOT_SERVING while SQLite fails)."""
    from mobkit.continuity.service import open_store
    from mobkit.server.backends import service_backends
    from mobkit.server.conditions import BACKEND_UNAVAILABLE
    from mobkit.server.config import Settings
    from mobkit.server.resources import Resources

    settings = Settings(continuity_backend="sqlite", sqlite_path=str(tmp_path / "c.sqlite3"))
    assert service_backends("continuity", settings) == {"sqlite"}
    resources = Resources(settings)
    store = await open_store(settings, resources)
    assert isinstance(store, SqliteContinuityStore)
    loop = asyncio.get_running_loop()

    def query_only(on: bool) -> None:  # every write fails: "attempt to write a readonly database"
        store._conn.execute(f"PRAGMA query_only={int(on)}")

    try:
        await store.upsert_continuity_record(record(), 1)
        await loop.run_in_executor(store._executor, query_only, True)
        with pytest.raises(StoreUnavailable):
            await store.save_session_snapshot(checkpoint(snapshot("refused"), version=1, token=1))
        [condition] = resources.conditions.current()
        assert (condition.backend, condition.reason) == ("sqlite", BACKEND_UNAVAILABLE)
        assert condition.detail.startswith(f"unusable at {store.path} (")
        await loop.run_in_executor(store._executor, query_only, False)
        await store.save_session_snapshot(checkpoint(snapshot("fits"), version=1, token=1))
        assert not resources.conditions.degraded
    finally:
        await store.close()
        await resources.close()
