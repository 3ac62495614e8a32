"""Harnesses for the continuity tests: one per backend, so the contract suite runs
unchanged on each.

Variants: ``memory``, ``sqlite`` (a real file), ``etcd`` (the session's
real etcd, a prefix per test, lease fence on), and the same three behind a real gRPC
server on port 0 reached through ``GrpcContinuityStore`` (``grpc-*``).
"""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from mobkit.continuity.client import GrpcContinuityStore
from mobkit.continuity.domain import ContinuityStore
from mobkit.continuity.etcd_backend import EtcdContinuityStore
from mobkit.continuity.memory import MemoryContinuityStore
from mobkit.continuity.operations import PlanStore
from mobkit.continuity.rules import Unreadable
from mobkit.continuity.sqlite_backend import SqliteContinuityStore
from mobkit.core.identity import AgentIdentity, AgentRuntimeId, FencingToken, SessionId
from mobkit.core.limits import MESSAGE_SIZE_OPTIONS
from mobkit.core.types import Checkpoint, ContinuityRecord, SessionSnapshot
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.errors import EtcdUnavailable
from mobkit.server.app import MobKitServer
from mobkit.server.config import Settings
from mobkit.server.host import start_services
from mobkit.server.resources import Resources

SNAPSHOT_LIMIT = 64 * 1024
"""Small limit so oversized-snapshot tests stay cheap."""

BACKENDS = ["memory", "sqlite", "etcd", "grpc-memory", "grpc-sqlite", "grpc-etcd"]


@dataclass
class Harness:
    """A store under test plus raw access to what it stored."""

    name: str
    store: ContinuityStore
    """What tests call: the engine itself, or the gRPC client in front of it."""
    engine: PlanStore
    """The engine behind ``store`` (raw access, fault injection)."""
    free_store: ContinuityStore
    """Same data, but tokens need not match a lease key (``store`` on memory/SQLite)."""
    raw_get: Callable[[bytes], Any]
    raw_put: Callable[[bytes, bytes], Any]
    dump: Callable[[], Any]
    new_token: Callable[[str, int], Any]
    lease_fenced: bool = False
    cleanups: list[Callable[[], Any]] = field(default_factory=list)

    async def token(self, identity: str, at_least: int = 0) -> int:
        """A token valid for ``identity`` from now on, higher than every earlier one.
        On etcd with the lease fence it is a real lease key's create_revision."""
        token: int = await self.new_token(identity, at_least)
        return token

    def fail_snapshot_reads(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make the backend fail reading snapshot values (records still read)."""
        engine = self.engine
        if isinstance(engine, EtcdContinuityStore):
            real = engine.range_at
            snap_prefix = engine.etcd_key(b"snapshots/")

            async def range_at(keys: Any, revision: int) -> Any:
                if any(k.startswith(snap_prefix) for k in keys):
                    raise EtcdUnavailable("injected: snapshot member down")
                return await real(keys, revision)

            monkeypatch.setattr(engine, "range_at", range_at)
        elif isinstance(engine, SqliteContinuityStore):
            real_select = engine._select

            def select(keys: Any) -> Any:
                if any(k.startswith(b"snapshots/") for k in keys):
                    raise sqlite3.OperationalError("injected: disk I/O error")
                return real_select(keys)

            monkeypatch.setattr(engine, "_select", select)
        else:
            assert isinstance(engine, MemoryContinuityStore)
            real_read = engine._read

            def read(request: Any) -> Any:
                if request.tolerate_unavailable:
                    return type(real_read(request))([Unreadable("injected") for _ in request.keys])
                return real_read(request)

            monkeypatch.setattr(engine, "_read", read)


def _counter_tokens() -> Callable[[str, int], Any]:
    counter = itertools.count(1)
    last = 0

    async def new_token(identity: str, at_least: int) -> int:
        nonlocal last
        last = max(next(counter), last + 1, at_least)
        return last

    return new_token


def _memory_raw(engine: MemoryContinuityStore) -> tuple[Any, Any, Any]:
    async def get(key: bytes) -> bytes | None:
        return engine.data.get(key)

    async def put(key: bytes, value: bytes) -> None:
        engine.data[key] = value

    async def dump() -> dict[bytes, bytes]:
        return dict(engine.data)

    return get, put, dump


def _sqlite_raw(path: Path) -> tuple[Any, Any, Any]:
    """A second connection on the file: corruption really lands on disk."""

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(path, isolation_level=None, timeout=10)

    async def get(key: bytes) -> bytes | None:
        with connect() as conn:
            row = conn.execute("SELECT value FROM continuity_kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    async def put(key: bytes, value: bytes) -> None:
        conn = connect()
        try:
            conn.execute(
                "INSERT OR REPLACE INTO continuity_kv (key, value) VALUES (?, ?)", (key, value)
            )
        finally:
            conn.close()

    async def dump() -> dict[bytes, bytes]:
        conn = connect()
        try:
            return {
                bytes(k): bytes(v) for k, v in conn.execute("SELECT key, value FROM continuity_kv")
            }
        finally:
            conn.close()

    return get, put, dump


def _etcd_raw(client: EtcdClient, engine: EtcdContinuityStore) -> tuple[Any, Any, Any]:
    async def get(key: bytes) -> bytes | None:
        kv = await client.get(engine.etcd_key(key))
        return None if kv is None else bytes(kv.value)

    async def put(key: bytes, value: bytes) -> None:
        await client.put(engine.etcd_key(key), value)

    async def dump() -> dict[bytes, bytes]:
        return {
            bytes(kv.key): bytes(kv.value) async for kv in client.range_prefix(engine.namespace)
        }

    return get, put, dump


def _etcd_tokens(client: EtcdClient, engine: EtcdContinuityStore) -> Callable[[str, int], Any]:
    async def new_token(identity: str, at_least: int) -> int:
        # A new holder: the lease key is re-created, its create_revision is the token.
        key = engine.lease_key(identity)
        await client.delete(key)
        reply = await client.put(key, b"test-holder")
        return int(reply.header.revision)

    return new_token


async def _serve(settings: Settings) -> tuple[MobKitServer, Resources, grpc.aio.Channel]:
    resources = Resources(settings)
    server, _ = await start_services(["continuity"], settings, resources)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=MESSAGE_SIZE_OPTIONS)
    return server, resources, channel


async def make_harness(
    name: str,
    tmp_path: Path,
    etcd_endpoint: str | None,
    etcd_prefix: str,
    snapshot_limit: int = SNAPSHOT_LIMIT,
) -> Harness:
    via_grpc = name.startswith("grpc-")
    backend = name.removeprefix("grpc-")
    settings = Settings(
        listen="127.0.0.1:0",
        continuity_backend=backend,
        sqlite_path=str(tmp_path / "continuity.sqlite3"),
        etcd_endpoints=[etcd_endpoint] if etcd_endpoint else [],
        etcd_prefix=etcd_prefix,
        snapshot_limit_bytes=snapshot_limit,
        grace=0.0,
    )
    cleanups: list[Callable[[], Any]] = []
    if via_grpc:
        server, resources, channel = await _serve(settings)

        async def stop() -> None:
            await channel.close()
            await server.stop(0)
            await resources.close()

        cleanups.append(stop)
        engine = resources.providers["continuity"]
        store: ContinuityStore = GrpcContinuityStore(channel, timeout=20.0)
    else:
        resources = Resources(settings)
        from mobkit.continuity.service import open_store

        engine = await open_store(settings, resources)
        store = engine

        async def close() -> None:
            await engine.close()
            await resources.close()

        cleanups.append(close)

    free_store: ContinuityStore = store
    lease_fenced = False
    if isinstance(engine, MemoryContinuityStore):
        raw = _memory_raw(engine)
        new_token = _counter_tokens()
    elif isinstance(engine, SqliteContinuityStore):
        raw = _sqlite_raw(engine.path)
        new_token = _counter_tokens()
    else:
        assert isinstance(engine, EtcdContinuityStore)
        lease_fenced = engine.lease_fence
        raw = _etcd_raw(engine.client, engine)
        new_token = _etcd_tokens(engine.client, engine)
        free_settings = dataclasses.replace(
            settings, listen="127.0.0.1:0", sections={"continuity": {"lease_fence": False}}
        )
        if via_grpc:
            f_server, f_resources, f_channel = await _serve(free_settings)

            async def stop_free() -> None:
                await f_channel.close()
                await f_server.stop(0)
                await f_resources.close()

            cleanups.append(stop_free)
            free_store = GrpcContinuityStore(f_channel, timeout=20.0)
        else:
            free_store = EtcdContinuityStore(
                engine.client,
                prefix=etcd_prefix,
                lease_fence=False,
                snapshot_limit_bytes=snapshot_limit,
            )
    get, put, dump = raw
    return Harness(
        name=name,
        store=store,
        engine=engine,
        free_store=free_store,
        raw_get=get,
        raw_put=put,
        dump=dump,
        new_token=new_token,
        lease_fenced=lease_fenced,
        cleanups=cleanups,
    )


def record(
    identity: str = "planner",
    session_id: str = "s-1",
    gen: int = 0,
    version: int = 0,
    runtime_id: str | None = None,
) -> ContinuityRecord:
    return ContinuityRecord(
        identity=AgentIdentity(identity),
        agent_runtime_id=AgentRuntimeId(runtime_id or f"rt-{identity}"),
        session_id=SessionId(session_id),
        generation=gen,
        checkpoint_version=version,
    )


def checkpoint(
    data: SessionSnapshot,
    *,
    version: int,
    token: int,
    identity: str = "planner",
    session_id: str = "s-1",
    gen: int = 0,
) -> Checkpoint:
    """A save of ``data`` as checkpoint ``version`` under ``token`` (defaults as
    :func:`record`'s)."""
    return Checkpoint(
        identity=AgentIdentity(identity),
        session_id=SessionId(session_id),
        generation=gen,
        checkpoint_version=version,
        fencing_token=FencingToken(token),
        snapshot=data,
    )


def snapshot(text: str | bytes) -> SessionSnapshot:
    return SessionSnapshot(text.encode() if isinstance(text, str) else text)
