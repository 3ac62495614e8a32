"""Crash safety: ``mobkit serve continuity`` is SIGKILLed in the middle of a stream of
saves; after a restart every acknowledged save is there and nothing is half-written."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import grpc
import pytest
from continuity_support import checkpoint, record

from mobkit.continuity.client import GrpcContinuityStore
from mobkit.core.errors import MobKitError
from mobkit.core.types import Ready, SessionSnapshot
from mobkit.etcd.client import EtcdClient
from mobkit.testing.processes import ServeProcess

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

WRITERS = 8
KILL_AFTER_ACKS = 120


def payload(identity: str, version: int) -> bytes:
    line = f"{identity} checkpoint {version}\n".encode()
    return (line * (4096 // len(line) + 1))[:4096]


async def _lease_tokens(endpoint: str, prefix: str, identities: list[str]) -> dict[str, int]:
    """Lease keys as the lease service would create them (the fence is on by default)."""
    async with await EtcdClient.connect([endpoint]) as client:
        tokens = {}
        for identity in identities:
            reply = await client.put(f"{prefix.rstrip('/')}/leases/{identity}", b"crash-test")
            tokens[identity] = int(reply.header.revision)
        return tokens


@pytest.mark.parametrize("backend", ["sqlite", "etcd"])
async def test_sigkill_mid_stream_keeps_every_acknowledged_save(
    backend: str, tmp_path: Path, etcd_prefix: str, request: pytest.FixtureRequest
) -> None:
    identities = [f"agent-{i}" for i in range(WRITERS)]
    args = ["--continuity-backend", backend, "--log-level", "WARNING"]
    if backend == "sqlite":
        args += ["--sqlite-path", str(tmp_path / "continuity.sqlite3")]
        tokens = dict.fromkeys(identities, 7)
    else:
        endpoint = request.getfixturevalue("etcd_session").endpoint
        args += ["--etcd-endpoints", endpoint, "--etcd-prefix", etcd_prefix]
        tokens = await _lease_tokens(endpoint, etcd_prefix, identities)
    service = ServeProcess("continuity", args, log_dir=tmp_path, name=f"continuity-{backend}")
    await asyncio.to_thread(service.start)
    try:
        acked = await _stream_until_killed(service, identities, tokens)
        assert sum(acked.values()) >= KILL_AFTER_ACKS
        await asyncio.to_thread(service.start)  # same address, same data
        await _check_recovered(service, identities, tokens, acked)
    finally:
        await asyncio.to_thread(service.kill)


async def _stream_until_killed(
    service: ServeProcess, identities: list[str], tokens: dict[str, int]
) -> dict[str, int]:
    acked = dict.fromkeys(identities, 0)
    enough = asyncio.Event()
    async with grpc.aio.insecure_channel(service.address or "") as channel:
        store = GrpcContinuityStore(channel, timeout=10.0, retries=0)
        for identity in identities:
            await store.upsert_continuity_record(
                record(identity, f"s-{identity}"), tokens[identity]
            )

        async def writer(identity: str) -> None:
            version = 0
            while True:
                version += 1
                try:
                    await store.save_session_snapshot(
                        checkpoint(
                            SessionSnapshot(payload(identity, version)),
                            identity=identity,
                            session_id=f"s-{identity}",
                            version=version,
                            token=tokens[identity],
                        ),
                    )
                except MobKitError:
                    return  # the service died under this save
                acked[identity] = version
                if sum(acked.values()) >= KILL_AFTER_ACKS:
                    enough.set()

        writers = [asyncio.create_task(writer(i)) for i in identities]
        await enough.wait()
        await asyncio.to_thread(service.kill)  # SIGKILL while saves are in flight
        await asyncio.wait_for(asyncio.gather(*writers), timeout=30)
    return acked


async def _check_recovered(
    service: ServeProcess,
    identities: list[str],
    tokens: dict[str, int],
    acked: dict[str, int],
) -> None:
    async with grpc.aio.insecure_channel(service.address or "") as channel:
        store = GrpcContinuityStore(channel, timeout=10.0)
        entries = dict(await store.resolve_many(identities))
        for identity in identities:
            state = entries[identity]
            # Ready means record and snapshot agree and the snapshot passes its checksum.
            assert isinstance(state, Ready), (identity, state)
            version = state.record.checkpoint_version
            # Every acknowledged save is there; at most the one in flight also landed.
            assert acked[identity] <= version <= acked[identity] + 1, (identity, version)
            loaded = await store.load_session_snapshot(f"s-{identity}")
            assert loaded is not None and loaded.checkpoint_version == version
            assert loaded.snapshot.data == payload(identity, version)
            assert loaded.revision == hashlib.sha256(loaded.snapshot.data).hexdigest()
            # And the stream can go on from there.
            await store.save_session_snapshot(
                checkpoint(
                    SessionSnapshot(payload(identity, version + 1)),
                    identity=identity,
                    session_id=f"s-{identity}",
                    version=version + 1,
                    token=tokens[identity],
                ),
            )
