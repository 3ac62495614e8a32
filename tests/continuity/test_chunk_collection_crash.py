"""Chunk garbage collection across a SIGKILL, on etcd (the one engine whose large saves
take several txns: SQLite and memory commit a save's chunks in its own transaction).

A child process saves large snapshots through a real ``EtcdContinuityStore`` and is
killed at a chosen step: after its chunks are written but before the manifest commits,
or after the commit but before the chunks the new manifest dropped are deleted. Nothing
referenced may be lost, and the next collection leaves exactly the referenced chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from continuity_support import checkpoint

from mobkit.continuity.codec import CHUNKS, chunk_key, decode_stored_snapshot, snapshot_key
from mobkit.continuity.etcd_backend import EtcdContinuityStore
from mobkit.continuity.sqlite_backend import SqliteContinuityStore
from mobkit.core.identity import AgentIdentity, AgentRuntimeId, SessionId
from mobkit.core.types import ContinuityRecord
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.process import EtcdProcess
from mobkit.gen.etcd.api.etcdserverpb import rpc_pb2

pytestmark = pytest.mark.timeout(120)

CHILD = textwrap.dedent(
    """
    import asyncio, random, sys
    from mobkit.continuity.etcd_backend import EtcdContinuityStore
    from mobkit.core.types import Checkpoint, ContinuityRecord, SessionSnapshot
    from mobkit.etcd.client import EtcdClient

    endpoint, prefix, token, stop_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

    async def main() -> None:
        client = await EtcdClient.connect([endpoint])
        store = EtcdContinuityStore(client, prefix=prefix, lease_fence=False)
        record = ContinuityRecord("planner", "rt-planner", "s-1", 0, 0)
        await store.upsert_continuity_record(record, token)
        first = random.Random(1).randbytes(4 * 1024 * 1024)
        await store.save_session_snapshot(Checkpoint(
            identity="planner", session_id="s-1", generation=0, checkpoint_version=1,
            fencing_token=token, snapshot=SessionSnapshot(first)))
        print("SAVED", flush=True)
        real_txn, real_garbage = store._txn_or_refresh, store._delete_garbage
        staged = 0

        async def txn(*args, **kwargs):
            nonlocal staged
            if stop_at == "before-commit" and staged == 3:
                print("STOPPED", flush=True)  # three chunk txns landed, the manifest never will
                await asyncio.sleep(3600)
            staged += 1
            return await real_txn(*args, **kwargs)

        async def garbage(*args, **kwargs):
            if stop_at == "before-collection":
                print("STOPPED", flush=True)  # committed; the dropped chunks are still there
                await asyncio.sleep(3600)
            return await real_garbage(*args, **kwargs)

        store._txn_or_refresh, store._delete_garbage = txn, garbage
        second = random.Random(2).randbytes(4 * 1024 * 1024)
        await store.save_session_snapshot(Checkpoint(
            identity="planner", session_id="s-1", generation=0, checkpoint_version=2,
            fencing_token=token, snapshot=SessionSnapshot(second)))
        print("DONE", flush=True)

    asyncio.run(main())
    """
)


@pytest_asyncio.fixture
async def client(etcd_session: EtcdProcess) -> AsyncIterator[EtcdClient]:
    client = await EtcdClient.connect([etcd_session.endpoint])
    try:
        yield client
    finally:
        await client.close()


async def _run_until_stopped(endpoint: str, prefix: str, stop_at: str) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, endpoint, prefix, "7", stop_at,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert child.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1] != "STOPPED":
            line = await asyncio.wait_for(child.stdout.readline(), 60)
            assert line, f"child exited early after {lines}"
            lines.append(line.decode().strip())
            assert lines[-1] != "DONE", "the child was never stopped"
        assert lines[0] == "SAVED"
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGKILL)
        await asyncio.wait_for(child.wait(), 10)


async def _chunks(client: EtcdClient, store: EtcdContinuityStore) -> set[bytes]:
    cut = len(store.namespace)
    return {
        bytes(kv.key)[cut:]
        async for kv in client.range_prefix(store.etcd_key(CHUNKS), keys_only=True)
    }


async def _referenced(client: EtcdClient, store: EtcdContinuityStore) -> set[bytes]:
    kv = await client.get(store.etcd_key(snapshot_key("planner", "s-1")))
    assert kv is not None
    return {
        chunk_key("planner", "s-1", ref) for ref in decode_stored_snapshot(bytes(kv.value)).chunks
    }


async def _new_owner(client: EtcdClient, prefix: str, version: int) -> EtcdContinuityStore:
    """A successor fencing the identity at its checkpoint, as activation does."""
    store = EtcdContinuityStore(client, prefix=prefix, lease_fence=False)
    record = ContinuityRecord(
        AgentIdentity("planner"), AgentRuntimeId("rt-planner"), SessionId("s-1"), 0, version
    )
    await store.upsert_continuity_record(record, 8)  # schedules a collection
    await store.idle()
    return store


async def test_sigkill_between_the_chunk_writes_and_the_commit(
    client: EtcdClient, etcd_session: EtcdProcess, etcd_prefix: str
) -> None:
    import random

    await _run_until_stopped(etcd_session.endpoint, etcd_prefix, "before-commit")
    probe = EtcdContinuityStore(client, prefix=etcd_prefix, lease_fence=False)
    written = await _chunks(client, probe)
    referenced = await _referenced(client, probe)
    assert written > referenced  # the dead save's chunks are there, unreferenced
    loaded = await probe.load_session_snapshot("s-1")
    assert loaded is not None and loaded.checkpoint_version == 1
    assert loaded.snapshot.data == random.Random(1).randbytes(4 * 1024 * 1024)
    store = await _new_owner(client, etcd_prefix, version=1)
    assert await _chunks(client, store) == referenced
    loaded = await store.load_session_snapshot("s-1")
    assert loaded is not None and loaded.snapshot.data == random.Random(1).randbytes(4 << 20)


async def test_sigkill_between_the_commit_and_the_collection(
    client: EtcdClient, etcd_session: EtcdProcess, etcd_prefix: str
) -> None:
    import random

    await _run_until_stopped(etcd_session.endpoint, etcd_prefix, "before-collection")
    probe = EtcdContinuityStore(client, prefix=etcd_prefix, lease_fence=False)
    referenced = await _referenced(client, probe)
    assert await _chunks(client, probe) > referenced  # the first snapshot's chunks linger
    loaded = await probe.load_session_snapshot("s-1")
    assert loaded is not None and loaded.checkpoint_version == 2  # the commit landed
    second = random.Random(2).randbytes(4 * 1024 * 1024)
    assert loaded.snapshot.data == second
    store = await _new_owner(client, etcd_prefix, version=2)
    assert await _chunks(client, store) == referenced
    loaded = await store.load_session_snapshot("s-1")
    assert loaded is not None and loaded.snapshot.data == second


FAILOVER_CHILD = textwrap.dedent(
    """
    import asyncio, random, sys
    from mobkit.continuity.etcd_backend import EtcdContinuityStore
    from mobkit.continuity.sqlite_backend import SqliteContinuityStore
    from mobkit.core.types import Checkpoint, ContinuityRecord, SessionSnapshot
    from mobkit.etcd.client import EtcdClient

    backend, where, prefix = sys.argv[1], sys.argv[2], sys.argv[3]

    async def main() -> None:
        if backend == "etcd":
            store = EtcdContinuityStore(await EtcdClient.connect([where]), prefix=prefix,
                                        lease_fence=False)
        else:
            store = await SqliteContinuityStore.open(where)
        await store.upsert_continuity_record(ContinuityRecord("planner", "rt", "s-1", 0, 0), 7)
        data = random.Random(32).randbytes(32 * 1024 * 1024)
        await store.save_session_snapshot(Checkpoint(
            identity="planner", session_id="s-1", generation=0, checkpoint_version=1,
            fencing_token=7, snapshot=SessionSnapshot(data)))
        print("STOPPED", flush=True)  # acknowledged: from here on it must survive
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("backend", ["sqlite", "etcd"])
async def test_a_32_mib_snapshot_survives_a_sigkill_and_resumes_byte_for_byte(
    backend: str, etcd_session: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    import random

    where = etcd_session.endpoint if backend == "etcd" else str(tmp_path / "c.sqlite3")
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FAILOVER_CHILD, backend, where, etcd_prefix,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 90)
        assert line.decode().strip() == "STOPPED"
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGKILL)
        await asyncio.wait_for(child.wait(), 10)
    # A successor: fence with a higher token, then resume.
    record = ContinuityRecord(
        AgentIdentity("planner"), AgentRuntimeId("rt"), SessionId("s-1"), 0, 1
    )
    if backend == "etcd":
        client = await EtcdClient.connect([where])
        store: EtcdContinuityStore | SqliteContinuityStore = EtcdContinuityStore(
            client, prefix=etcd_prefix, lease_fence=False
        )
    else:
        store = await SqliteContinuityStore.open(where)
    try:
        await store.upsert_continuity_record(record, 8)
        loaded = await store.load_session_snapshot("s-1")
        assert loaded is not None and loaded.checkpoint_version == 1
        assert loaded.snapshot.data == random.Random(32).randbytes(32 * 1024 * 1024)
    finally:
        await store.close()
        if backend == "etcd":
            await client.close()


async def test_a_full_etcd_refuses_saves_with_backend_full_and_still_serves_reads(
    tmp_path: Path,
) -> None:
    """Over its quota etcd refuses every txn, even read-only ones; the store answers
    BACKEND_FULL for writes, keeps reading through plain ranges, and saves again once
    an operator compacted, defragmented and disarmed."""
    import random

    from mobkit.core.errors import BackendFull
    from mobkit.core.types import SessionSnapshot

    etcd = EtcdProcess(
        tmp_path / "etcd", unsafe_no_fsync=True, quota_backend_bytes=16 * 1024 * 1024
    )
    etcd.start()
    client = await EtcdClient.connect([etcd.endpoint])
    store = EtcdContinuityStore(client, prefix="/full", lease_fence=False)
    try:
        record = ContinuityRecord(
            AgentIdentity("planner"), AgentRuntimeId("rt"), SessionId("s-1"), 0, 0
        )
        await store.upsert_continuity_record(record, 7)
        kept = random.Random(1).randbytes(2 * 1024 * 1024)
        await store.save_session_snapshot(checkpoint(SessionSnapshot(kept), version=1, token=7))
        rng = random.Random(2)
        version = 1
        with pytest.raises(BackendFull) as info:
            for version in range(2, 200):  # every save replaces 2 MiB: history fills etcd
                await store.save_session_snapshot(
                    checkpoint(SessionSnapshot(rng.randbytes(2 << 20)), version=version, token=7)
                )
        assert info.value.reason == "BACKEND_FULL" and info.value.backend == "etcd"
        committed = version - 1
        assert [a.alarm for a in await client.alarms()] == [rpc_pb2.NOSPACE]
        # Reads still work: resolve, load (byte for byte: the last acknowledged save).
        state = (await store.resolve_many(["planner"]))[0][1]
        assert state.record.checkpoint_version == committed  # type: ignore[union-attr]
        loaded = await store.load_session_snapshot("s-1")
        assert loaded is not None and loaded.checkpoint_version == committed
        # The operator's recovery: compact, defragment, disarm.
        status = await client.status()
        await client.compact(int(status.header.revision), physical=True)
        await client.defragment()
        await client.disarm()
        again = random.Random(3).randbytes(1024 * 1024)
        await store.save_session_snapshot(
            checkpoint(SessionSnapshot(again), version=committed + 1, token=7)
        )
        loaded = await store.load_session_snapshot("s-1")
        assert loaded is not None and loaded.snapshot.data == again
    finally:
        await store.close()
        await client.close()
        etcd.kill()


async def test_reads_fall_back_to_plain_ranges_when_etcd_refuses_txns_for_space(
    client: EtcdClient, etcd_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some etcd versions refuse even a read-only txn while NOSPACE is raised."""
    import random

    from mobkit.core.errors import BackendFull
    from mobkit.core.types import Ready, SessionSnapshot
    from mobkit.etcd.errors import EtcdNoSpace

    store = EtcdContinuityStore(client, prefix=etcd_prefix, lease_fence=False)
    record = ContinuityRecord(
        AgentIdentity("planner"), AgentRuntimeId("rt"), SessionId("s-1"), 0, 0
    )
    await store.upsert_continuity_record(record, 7)
    data = random.Random(4).randbytes(3 * 1024 * 1024)
    await store.save_session_snapshot(checkpoint(SessionSnapshot(data), version=1, token=7))
    real_txn = client.txn

    async def txn(request: rpc_pb2.TxnRequest, **kwargs: object) -> rpc_pb2.TxnResponse:
        raise EtcdNoSpace("etcdserver: mvcc: database space exceeded", code="RESOURCE_EXHAUSTED")

    monkeypatch.setattr(client, "txn", txn)
    state = (await store.resolve_many(["planner"]))[0][1]
    assert isinstance(state, Ready) and state.record.checkpoint_version == 1
    loaded = await store.load_session_snapshot("s-1")
    assert loaded is not None and loaded.snapshot.data == data
    with pytest.raises(BackendFull):  # writes are refused, loudly
        await store.save_session_snapshot(checkpoint(SessionSnapshot(b"new"), version=2, token=7))
    monkeypatch.setattr(client, "txn", real_txn)
    await store.save_session_snapshot(checkpoint(SessionSnapshot(b"new"), version=2, token=7))
