"""Many writers racing on one identity, on every backend (fixture ``h``)."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from continuity_support import Harness, checkpoint, record

from mobkit.core.errors import StaleCheckpointVersion, StaleFencingToken
from mobkit.core.types import Ready, SessionSnapshot

pytestmark = pytest.mark.timeout(120)

ID = "contended"
WRITERS = 100
SAVES_PER_WRITER = 3


def payload(writer: int, token: int, version: int) -> bytes:
    return f"writer={writer} token={token} version={version} ".encode() * 8


async def test_concurrent_writers_with_random_tokens(h: Harness) -> None:
    store = h.free_store  # tokens are arbitrary numbers here, not lease keys
    rng = random.Random(4242)
    await store.upsert_continuity_record(record(ID), 1)
    versions = itertools.count(1)
    attempted: dict[int, bytes] = {}
    accepted: list[tuple[int, int, bytes]] = []  # (version, token, data), in ack order
    stale_tokens = stale_versions = 0
    done = asyncio.Event()

    async def writer(index: int) -> None:
        nonlocal stale_tokens, stale_versions
        token = rng.randint(1, 60)
        for _ in range(SAVES_PER_WRITER):
            version = next(versions)
            data = payload(index, token, version)
            attempted[version] = data
            try:
                await store.save_session_snapshot(
                    checkpoint(SessionSnapshot(data), identity=ID, version=version, token=token)
                )
            except StaleFencingToken as exc:
                assert int(exc.metadata["current"]) > token
                stale_tokens += 1
            except StaleCheckpointVersion as exc:
                assert int(exc.metadata["current"]) >= version
                stale_versions += 1
            else:
                accepted.append((version, token, data))
            await asyncio.sleep(0)  # interleave even on the memory engine

    observed: list[int] = []

    async def watcher() -> None:
        # Versions never go backwards, and record and snapshot always agree.
        while not done.is_set():
            [(_, state)] = await store.resolve_many([ID])
            assert isinstance(state, Ready), state
            version = state.record.checkpoint_version
            assert not observed or version >= observed[-1]
            observed.append(version)
            loaded = await store.load_session_snapshot("s-1")
            if loaded is not None:
                assert loaded.snapshot.data == attempted[loaded.checkpoint_version]
            await asyncio.sleep(0)

    watching = asyncio.create_task(watcher())
    try:
        await asyncio.gather(*(writer(i) for i in range(WRITERS)))
    finally:
        done.set()
        await watching

    assert accepted, "no write was accepted"
    assert len(accepted) + stale_tokens + stale_versions == WRITERS * SAVES_PER_WRITER
    # In commit order (= version order) the tokens never decrease: once a token has
    # written, no lower token was ever accepted again.
    by_version = sorted(accepted)
    tokens = [token for _, token, _ in by_version]
    assert tokens == sorted(tokens)
    last_version, last_token, last_data = by_version[-1]
    assert last_token == max(tokens)
    [(_, state)] = await store.resolve_many([ID])
    assert state == Ready(record(ID, version=last_version))
    loaded = await store.load_session_snapshot("s-1")
    assert loaded is not None and loaded.snapshot.data == last_data
    found = await store.resolve_record_by_session("s-1")
    assert found is not None and found.fencing_token == last_token
    assert observed and observed[-1] <= last_version
