"""Continuity store: save latency/throughput and batch resolve cost, next to raw baselines.

Run: ``.venv/bin/python -m benchmarks continuity [--writers 32] [--saves 30] [--solo 120]
[--rounds 6] [--identities 10000]`` (or ``./dev bench continuity``). Starts its own etcd (fsync on) in a
temporary directory; the service runs as ``mobkit serve continuity`` in a child process
(so client and server do not share one event loop or core). All figures come from one
run:

1. ``SaveSessionSnapshot`` of a 4 KiB snapshot on SQLite and on etcd, each layer measured
   with one writer (``--solo`` sequential saves: the per-call overhead) and with
   ``--writers`` concurrent writers, one identity each (p50, p99, throughput). The layers
   take turns in ``--rounds`` rounds, so a burst of load elsewhere hits them alike:

   * raw: the backend write a save needs at minimum, with no rules - one etcd txn putting
     record + snapshot; one SQLite transaction (``BEGIN IMMEDIATE``, two upserts,
     ``COMMIT``, WAL + synchronous=FULL) on one connection thread, as the store uses;
   * store: the in-process engine (reads, rules, fenced CAS write);
   * service: the gRPC service through ``GrpcContinuityStore`` (goal: p50 <= 2.5x raw).

2. ``ResolveMany`` of ``--identities`` identities, each Ready with a 4 KiB snapshot, on
   etcd: the etcd round trips the store used (goal: O(pages), against one per identity)
   and the wall time, in-process and through the service, against a raw paginated scan
   of the same keys.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from mobkit.continuity.client import GrpcContinuityStore
from mobkit.continuity.codec import (
    RecordState,
    SnapshotHeader,
    encode_record,
    encode_snapshot,
    record_key,
    snapshot_key,
)
from mobkit.continuity.domain import ContinuityStore, content_revision
from mobkit.continuity.etcd_backend import EtcdContinuityStore
from mobkit.continuity.sqlite_backend import SqliteContinuityStore
from mobkit.core.identity import AgentIdentity, AgentRuntimeId, SessionId
from mobkit.core.keyspace import Keyspace
from mobkit.core.types import Checkpoint, ContinuityRecord, Ready, SessionSnapshot
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.ops import put_op, txn_request
from mobkit.etcd.process import EtcdProcess
from mobkit.testing.processes import ServeProcess

SNAPSHOT = SessionSnapshot(os.urandom(4096))
GOAL_RATIO = 2.5

Save = Callable[[str, int], Awaitable[object]]
"""``save(identity, version)``."""


@dataclass
class Figures:
    p50_ms: float
    p99_ms: float
    per_second: float


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0

    def figures(self) -> Figures:
        cuts = statistics.quantiles(self.latencies, n=100)
        return Figures(cuts[49] * 1000, cuts[98] * 1000, len(self.latencies) / self.wall)


@dataclass
class Layer:
    name: str
    prepare: Callable[[Sequence[str]], Awaitable[None]]
    save: Save
    versions: dict[str, int] = field(default_factory=dict)
    solo: Samples = field(default_factory=Samples)
    many: Samples = field(default_factory=Samples)

    def identities(self, writers: int) -> tuple[str, list[str]]:
        stem = self.name.split()[0]
        return f"{stem}-solo", [f"{stem}-{w:03d}" for w in range(writers)]

    async def next_save(self, identity: str, into: list[float]) -> None:
        version = self.versions[identity] = self.versions.get(identity, 0) + 1
        started = time.perf_counter()
        await self.save(identity, version)
        into.append(time.perf_counter() - started)


def _record(identity: str, version: int = 0) -> ContinuityRecord:
    return ContinuityRecord(
        AgentIdentity(identity), AgentRuntimeId(f"rt-{identity}"), SessionId(f"s-{identity}"),
        0, version,
    )  # fmt: skip


async def _measure(
    layers: Sequence[Layer], writers: int, saves: int, solo: int, rounds: int
) -> list[tuple[str, Figures, Figures]]:
    """Each layer with one writer (sequential saves) and with ``writers`` concurrent
    writers, in interleaved rounds so that a burst of load elsewhere on the machine does
    not land on one layer only."""
    for layer in layers:
        one, many = layer.identities(writers)
        await layer.prepare([one, *many])
        for _ in range(5):  # warm up connections and caches
            await layer.next_save(one, [])
    for _ in range(rounds):
        for layer in layers:
            one, many = layer.identities(writers)
            started = time.perf_counter()
            for _ in range(solo // rounds):
                await layer.next_save(one, layer.solo.latencies)
            layer.solo.wall += time.perf_counter() - started

            async def writer(identity: str, layer: Layer = layer) -> None:
                for _ in range(saves // rounds):
                    await layer.next_save(identity, layer.many.latencies)

            started = time.perf_counter()
            await asyncio.gather(*(writer(i) for i in many))
            layer.many.wall += time.perf_counter() - started
    return [(layer.name, layer.solo.figures(), layer.many.figures()) for layer in layers]


def _table(title: str, rows: Sequence[tuple[str, Figures, Figures]], writers: int) -> None:
    _, raw_solo, raw_many = rows[0]
    print(f"\n{title}")
    print(f"  {'layer':<30}{'1 writer':>10}{'':>9}{f'{writers} writers':>12}{'':>9}{'':>9}{'':>10}")
    print(
        f"  {'':<30}{'p50 ms':>10}{'vs raw':>9}{'p50 ms':>12}{'vs raw':>9}{'p99 ms':>9}"
        f"{'saves/s':>10}"
    )
    for name, solo, many in rows:
        print(
            f"  {name:<30}{solo.p50_ms:>10.2f}{solo.p50_ms / raw_solo.p50_ms:>8.2f}x"
            f"{many.p50_ms:>12.2f}{many.p50_ms / raw_many.p50_ms:>8.2f}x{many.p99_ms:>9.2f}"
            f"{many.per_second:>10.0f}"
        )
    name, solo, many = rows[-1]
    verdict = "met" if many.p50_ms / raw_many.p50_ms <= GOAL_RATIO else "MISSED"
    print(
        f"  goal: {name} p50 <= {GOAL_RATIO}x raw with {writers} writers: {verdict} "
        f"({many.p50_ms / raw_many.p50_ms:.2f}x; 1 writer: "
        f"{solo.p50_ms / raw_solo.p50_ms:.2f}x)"
    )


def _store_layer(
    name: str, store: ContinuityStore, tokens: Callable[[str], Awaitable[int]]
) -> Layer:
    granted: dict[str, int] = {}

    async def prepare(ids: Sequence[str]) -> None:
        for identity in ids:
            granted[identity] = await tokens(identity)
            await store.upsert_continuity_record(_record(identity), granted[identity])

    async def save(identity: str, version: int) -> None:
        await store.save_session_snapshot(
            Checkpoint(
                identity=identity,
                session_id=f"s-{identity}",
                generation=0,
                checkpoint_version=version,
                fencing_token=granted[identity],
                snapshot=SNAPSHOT,
            )
        )

    return Layer(name, prepare, save)


def _serve(backend_args: list[str], log_dir: Path, name: str) -> ServeProcess:
    return ServeProcess(
        "continuity", [*backend_args, "--log-level", "WARNING"], log_dir=log_dir, name=name
    ).start()


async def _nothing(ids: Sequence[str]) -> None:
    return None


# -- SQLite -------------------------------------------------------------------------------


class _RawSqlite:
    """The minimum a save costs on SQLite: one fsynced transaction writing two rows,
    on one connection thread (as the store runs it)."""

    def __init__(self, path: Path) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1)
        self._conn = self._executor.submit(self._open, path).result()

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
        return conn

    def _write(self, rows: list[tuple[bytes, bytes]]) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO kv (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            rows,
        )
        conn.execute("COMMIT")

    async def save(self, identity: str, version: int) -> None:
        record = encode_record(RecordState(AgentIdentity(identity), _record(identity, version), 1))
        rows = [
            (record_key(identity), record),
            (snapshot_key(identity, f"s-{identity}"), SNAPSHOT.data),
        ]
        await asyncio.get_running_loop().run_in_executor(self._executor, self._write, rows)

    def close(self) -> None:
        self._executor.submit(self._conn.close).result()
        self._executor.shutdown()


async def bench_sqlite(tmp: Path, writers: int, saves: int, solo: int, rounds: int) -> None:
    counter = itertools.count(1)

    async def tokens(identity: str) -> int:
        return next(counter)

    raw = _RawSqlite(tmp / "raw.sqlite3")
    store = await SqliteContinuityStore.open(tmp / "store.sqlite3")
    service = await asyncio.to_thread(
        _serve,
        ["--continuity-backend", "sqlite", "--sqlite-path", str(tmp / "svc.sqlite3")],
        tmp,
        "continuity-sqlite",
    )
    try:
        async with grpc.aio.insecure_channel(service.address or "") as channel:
            layers = [
                Layer("raw transaction (baseline)", _nothing, raw.save),
                _store_layer("store (in-process)", store, tokens),
                _store_layer("service (gRPC, own process)", GrpcContinuityStore(channel), tokens),
            ]
            rows = await _measure(layers, writers, saves, solo, rounds)
    finally:
        await asyncio.to_thread(service.stop)
        await store.close()
        raw.close()
    _table(
        f"SaveSessionSnapshot 4 KiB on SQLite (WAL, synchronous=FULL): {solo} sequential "
        f"saves; {writers} concurrent writers x {saves} saves ({rounds} interleaved rounds)",
        rows,
        writers,
    )


# -- etcd ------------------------------------------------------------------------------------


async def bench_etcd_saves(
    etcd: EtcdProcess, tmp: Path, writers: int, saves: int, solo: int, rounds: int
) -> None:
    client = await EtcdClient.connect([etcd.endpoint])

    async def raw_save(identity: str, version: int) -> None:
        record = encode_record(RecordState(AgentIdentity(identity), _record(identity, version), 1))
        await client.txn(
            txn_request(
                success=[
                    put_op(b"/raw/" + record_key(identity), record),
                    put_op(b"/raw/" + snapshot_key(identity, f"s-{identity}"), SNAPSHOT.data),
                ]
            )
        )

    def lease_tokens(prefix: str) -> Callable[[str], Awaitable[int]]:
        async def token(identity: str) -> int:  # as the lease service creates a lease key
            reply = await client.put(Keyspace(prefix).lease(identity), b"bench-holder")
            return int(reply.header.revision)

        return token

    service = await asyncio.to_thread(
        _serve,
        ["--continuity-backend", "etcd", "--etcd-endpoints", etcd.endpoint,
         "--etcd-prefix", "/bench-svc"],
        tmp,
        "continuity-etcd",
    )  # fmt: skip
    try:
        async with grpc.aio.insecure_channel(service.address or "") as channel:
            store = EtcdContinuityStore(client, prefix="/bench-store")
            remote = GrpcContinuityStore(channel)
            layers = [
                Layer("raw txn: record + snapshot puts", _nothing, raw_save),
                _store_layer("store (in-process)", store, lease_tokens("/bench-store")),
                _store_layer("service (gRPC, own process)", remote, lease_tokens("/bench-svc")),
            ]
            rows = await _measure(layers, writers, saves, solo, rounds)
    finally:
        await asyncio.to_thread(service.stop)
        await client.close()
    _table(
        f"SaveSessionSnapshot 4 KiB on etcd (fsync on, lease fence on): {solo} sequential "
        f"saves; {writers} concurrent writers x {saves} saves ({rounds} interleaved rounds)",
        rows,
        writers,
    )


async def bench_resolve(etcd: EtcdProcess, tmp: Path, count: int) -> None:
    prefix = "/bench-resolve"
    client = await EtcdClient.connect([etcd.endpoint], timeout=60)
    try:
        store = EtcdContinuityStore(client, prefix=prefix)
        ids = [f"agent-{i:05d}" for i in range(count)]
        revision = content_revision(SNAPSHOT.data)
        for start in range(0, count, 50):  # seeding, not measured
            ops = []
            for identity in ids[start : start + 50]:
                session = SessionId(f"s-{identity}")
                header = SnapshotHeader(identity, session, 0, 1, 1, revision, len(SNAPSHOT.data))
                state = RecordState(AgentIdentity(identity), _record(identity, 1), 1, (session,))
                ops.append(put_op(store.etcd_key(record_key(identity)), encode_record(state)))
                ops.append(
                    put_op(
                        store.etcd_key(snapshot_key(identity, session)),
                        encode_snapshot(header, SNAPSHOT.data),
                    )
                )
            await client.txn(txn_request(success=ops))

        started = time.perf_counter()
        scanned = 0
        async for _ in client.range_prefix(store.namespace, page_size=256):
            scanned += 1
        raw_wall = time.perf_counter() - started
        raw_pages = -(-scanned // 256)

        before = client.round_trips
        started = time.perf_counter()
        entries = await store.resolve_many(ids)
        store_wall = time.perf_counter() - started
        trips = client.round_trips - before
        assert sum(isinstance(s, Ready) for _, s in entries) == count, "seeding failed"

        service = await asyncio.to_thread(
            _serve,
            ["--continuity-backend", "etcd", "--etcd-endpoints", etcd.endpoint,
             "--etcd-prefix", prefix],
            tmp,
            "continuity-resolve",
        )  # fmt: skip
        try:
            async with grpc.aio.insecure_channel(service.address or "") as channel:
                remote = GrpcContinuityStore(channel, timeout=120)
                await remote.resolve_many(ids[:10])  # connect
                started = time.perf_counter()
                remote_entries = await remote.resolve_many(ids)
                service_wall = time.perf_counter() - started
                assert len(remote_entries) == count
        finally:
            await asyncio.to_thread(service.stop)
    finally:
        await client.close()
    print(f"\nResolveMany of {count:,} identities on etcd (each Ready, 4 KiB snapshot checked)")
    print(
        f"  etcd round trips: store {trips} vs one per identity {count:,} "
        f"({trips / count:.4f}x); {store.max_txn_ops} range ops per txn, records then snapshots"
    )
    print(
        f"  wall time: store {store_wall:.2f} s, service (gRPC) {service_wall:.2f} s vs raw "
        f"paginated scan of the same {scanned:,} keys ({raw_pages} pages) {raw_wall:.2f} s "
        f"(store {store_wall / raw_wall:.2f}x, service {service_wall / raw_wall:.2f}x)"
    )


async def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks continuity")
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument("--saves", type=int, default=30)
    parser.add_argument("--solo", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--identities", type=int, default=10_000)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    load = os.getloadavg()[0]
    print(f"continuity benchmark ({os.cpu_count()} cores, load average {load:.2f} at start)")
    with tempfile.TemporaryDirectory(prefix="mobkit-bench-continuity-") as tmp_dir:
        tmp = Path(tmp_dir)
        await bench_sqlite(tmp, args.writers, args.saves, args.solo, args.rounds)
        etcd = EtcdProcess(tmp / "etcd")
        await etcd.start_async()
        try:
            await bench_etcd_saves(etcd, tmp, args.writers, args.saves, args.solo, args.rounds)
            await bench_resolve(etcd, tmp, args.identities)
        finally:
            await etcd.stop_async()
    print(f"\n(total {time.perf_counter() - started:.1f} s)")
