"""Continuity store: save latency/throughput and batch resolve cost, next to raw baselines.

Run: ``.venv/bin/python -m benchmarks continuity [--writers 32] [--saves 25]
[--identities 10000]`` (or ``./dev bench continuity``). Starts its own etcd (fsync on)
in a temporary directory; the service runs as ``mobkit serve continuity`` in a child
process (so client and server do not share one event loop). All figures come from one
run:

1. ``SaveSessionSnapshot`` of a 4 KiB snapshot, ``--writers`` concurrent writers (one
   identity each) x ``--saves``, on SQLite and on etcd, three layers each:

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
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
from mobkit.core.types import ContinuityRecord, Ready, SessionSnapshot
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.ops import put_op, txn_request
from mobkit.etcd.process import EtcdProcess
from mobkit.testing.processes import ServeProcess

SNAPSHOT = SessionSnapshot(os.urandom(4096))
GOAL_RATIO = 2.5


@dataclass
class Figures:
    p50_ms: float
    p99_ms: float
    per_second: float


def _record(identity: str, version: int = 0) -> ContinuityRecord:
    return ContinuityRecord(
        AgentIdentity(identity),
        AgentRuntimeId(f"rt-{identity}"),
        SessionId(f"s-{identity}"),
        0,
        version,
    )


async def _writers(
    writers: int, saves: int, save: Callable[[int, int], Awaitable[object]]
) -> Figures:
    """``writers`` tasks, each calling ``save(writer, version)`` for versions 1..saves."""
    latencies: list[float] = []

    async def run(writer: int) -> None:
        for version in range(1, saves + 1):
            started = time.perf_counter()
            await save(writer, version)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(run(w) for w in range(writers)))
    wall = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return Figures(cuts[49] * 1000, cuts[98] * 1000, len(latencies) / wall)


def _table(title: str, rows: Sequence[tuple[str, Figures]]) -> None:
    raw = rows[0][1]
    print(f"\n{title}")
    print(f"  {'layer':<34}{'p50 ms':>9}{'p99 ms':>9}{'saves/s':>10}{'p50 vs raw':>12}")
    for name, f in rows:
        ratio = f.p50_ms / raw.p50_ms
        goal = "" if name.startswith("raw") else (
            "  (goal <= 2.5x: met)" if ratio <= GOAL_RATIO else "  (goal <= 2.5x: MISSED)"
        )
        if not name.startswith("service"):
            goal = ""
        print(
            f"  {name:<34}{f.p50_ms:>9.2f}{f.p99_ms:>9.2f}{f.per_second:>10.0f}"
            f"{ratio:>11.2f}x{goal}"
        )


async def _store_layers(
    store: ContinuityStore,
    tokens: Callable[[str], Awaitable[int]],
    stem: str,
    writers: int,
    saves: int,
) -> Figures:
    ids = [f"{stem}-{w:03d}" for w in range(writers)]
    granted = {i: await tokens(i) for i in ids}
    for identity in ids:
        await store.upsert_continuity_record(_record(identity), granted[identity])

    async def save(writer: int, version: int) -> None:
        identity = ids[writer]
        await store.save_session_snapshot(
            identity, f"s-{identity}", 0, version, granted[identity], SNAPSHOT
        )

    return await _writers(writers, saves, save)


def _serve(backend_args: list[str], log_dir: Path, name: str) -> ServeProcess:
    return ServeProcess(
        "continuity",
        [*backend_args, "--log-level", "WARNING"],
        log_dir=log_dir,
        name=name,
    ).start()


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

    def _write(self, record: bytes, rkey: bytes, skey: bytes) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO kv (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [(rkey, record), (skey, SNAPSHOT.data)],
        )
        conn.execute("COMMIT")

    async def save(self, writer: int, version: int) -> None:
        identity = f"raw-{writer:03d}"
        record = encode_record(RecordState(AgentIdentity(identity), _record(identity, version), 1))
        await asyncio.get_running_loop().run_in_executor(
            self._executor, self._write, record, record_key(identity),
            snapshot_key(identity, f"s-{identity}"),
        )

    def close(self) -> None:
        self._executor.submit(self._conn.close).result()
        self._executor.shutdown()


async def bench_sqlite(tmp: Path, writers: int, saves: int) -> None:
    raw = _RawSqlite(tmp / "raw.sqlite3")
    try:
        raw_figures = await _writers(writers, saves, raw.save)
    finally:
        raw.close()

    counter = iter(range(1, 1_000_000))

    async def tokens(identity: str) -> int:
        return next(counter)

    store = await SqliteContinuityStore.open(tmp / "store.sqlite3")
    try:
        store_figures = await _store_layers(store, tokens, "store", writers, saves)
    finally:
        await store.close()

    service = await asyncio.to_thread(
        _serve,
        ["--continuity-backend", "sqlite", "--sqlite-path", str(tmp / "svc.sqlite3")],
        tmp,
        "continuity-sqlite",
    )
    try:
        async with grpc.aio.insecure_channel(service.address or "") as channel:
            remote = GrpcContinuityStore(channel)
            service_figures = await _store_layers(remote, tokens, "svc", writers, saves)
    finally:
        await asyncio.to_thread(service.stop)
    _table(
        f"SaveSessionSnapshot 4 KiB on SQLite (WAL, synchronous=FULL), "
        f"{writers} concurrent writers x {saves} saves",
        [
            ("raw transaction (baseline)", raw_figures),
            ("store (in-process)", store_figures),
            ("service (gRPC, own process)", service_figures),
        ],
    )


# -- etcd ------------------------------------------------------------------------------------


async def bench_etcd_saves(etcd: EtcdProcess, tmp: Path, writers: int, saves: int) -> None:
    client = await EtcdClient.connect([etcd.endpoint])
    try:

        async def raw_save(writer: int, version: int) -> None:
            identity = f"raw-{writer:03d}"
            record = encode_record(
                RecordState(AgentIdentity(identity), _record(identity, version), 1)
            )
            await client.txn(
                txn_request(
                    success=[
                        put_op(b"/raw/" + record_key(identity), record),
                        put_op(b"/raw/" + snapshot_key(identity, f"s-{identity}"), SNAPSHOT.data),
                    ]
                )
            )

        raw_figures = await _writers(writers, saves, raw_save)

        def lease_tokens(prefix: str) -> Callable[[str], Awaitable[int]]:
            async def token(identity: str) -> int:
                reply = await client.put(f"{prefix}/leases/{identity}", b"bench-holder")
                return int(reply.header.revision)

            return token

        store = EtcdContinuityStore(client, prefix="/bench-store")
        store_figures = await _store_layers(
            store, lease_tokens("/bench-store"), "store", writers, saves
        )

        service = await asyncio.to_thread(
            _serve,
            [
                "--continuity-backend", "etcd",
                "--etcd-endpoints", etcd.endpoint,
                "--etcd-prefix", "/bench-svc",
            ],
            tmp,
            "continuity-etcd",
        )
        try:
            async with grpc.aio.insecure_channel(service.address or "") as channel:
                remote = GrpcContinuityStore(channel)
                service_figures = await _store_layers(
                    remote, lease_tokens("/bench-svc"), "svc", writers, saves
                )
        finally:
            await asyncio.to_thread(service.stop)
    finally:
        await client.close()
    _table(
        f"SaveSessionSnapshot 4 KiB on etcd (fsync on, lease fence on), "
        f"{writers} concurrent writers x {saves} saves",
        [
            ("raw txn: record + snapshot puts", raw_figures),
            ("store (in-process)", store_figures),
            ("service (gRPC, own process)", service_figures),
        ],
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
                header = SnapshotHeader(
                    identity, f"s-{identity}", 0, 1, 1, revision, len(SNAPSHOT.data)
                )
                state = RecordState(
                    AgentIdentity(identity), _record(identity, 1), 1, (SessionId(f"s-{identity}"),)
                )
                ops.append(put_op(store.etcd_key(record_key(identity)), encode_record(state)))
                ops.append(
                    put_op(
                        store.etcd_key(snapshot_key(identity, f"s-{identity}")),
                        encode_snapshot(header, SNAPSHOT.data),
                    )
                )
            await client.txn(txn_request(success=ops))

        started = time.perf_counter()
        scanned = 0
        async for _ in client.range_prefix(store.namespace, page_size=256):
            scanned += 1
        raw_wall = time.perf_counter() - started
        raw_trips = -(-scanned // 256)

        before = client.round_trips
        started = time.perf_counter()
        entries = await store.resolve_many(ids)
        store_wall = time.perf_counter() - started
        trips = client.round_trips - before
        assert sum(isinstance(s, Ready) for _, s in entries) == count, "seeding failed"

        service = await asyncio.to_thread(
            _serve,
            [
                "--continuity-backend", "etcd",
                "--etcd-endpoints", etcd.endpoint,
                "--etcd-prefix", prefix,
            ],
            tmp,
            "continuity-resolve",
        )
        try:
            async with grpc.aio.insecure_channel(
                service.address or "", options=[("grpc.max_receive_message_length", 64 << 20)]
            ) as channel:
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
        f"paginated scan of the same {scanned:,} keys ({raw_trips} pages) {raw_wall:.2f} s "
        f"(store {store_wall / raw_wall:.2f}x, service {service_wall / raw_wall:.2f}x)"
    )


async def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks continuity")
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument("--saves", type=int, default=25)
    parser.add_argument("--identities", type=int, default=10_000)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mobkit-bench-continuity-") as tmp_dir:
        tmp = Path(tmp_dir)
        await bench_sqlite(tmp, args.writers, args.saves)
        etcd = EtcdProcess(tmp / "etcd")
        await etcd.start_async()
        try:
            await bench_etcd_saves(etcd, tmp, args.writers, args.saves)
            await bench_resolve(etcd, tmp, args.identities)
        finally:
            await etcd.stop_async()
    print(f"\n(total {time.perf_counter() - started:.1f} s)")
