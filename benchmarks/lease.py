"""Lease service on etcd: batching, latency and renewal cost, each next to its baseline.

Run: ``.venv/bin/python -m benchmarks lease [--count N] [--rounds N] [--samples N]
[--no-fsync]`` (or ``./dev bench lease``). Starts its own etcd (fsync on unless
``--no-fsync``) in a temporary directory and the LeaseService on 127.0.0.1:0 in this
process, called through GrpcLeaseProvider; all figures come from one run:

1. acquire ``--count`` identities with one AcquireLeases call, against
   (a) the same number of sequential create-if-absent txns from the raw EtcdClient
   (goal: >= 10x faster) and (b) the raw nested-txn batches alone, 64 per Txn, built
   by the same function and pipelined like the service does, results not even read
   (the floor; goal: >= 0.8x of its rate). Batches run ``--rounds`` times in
   alternating order, each after a pause that lets etcd flush the previous writes;
   medians are compared;
2. p50 of a single-identity AcquireLeases against the p50 of one raw create-if-absent
   txn, samples interleaved (goal: <= 2.5x);
3. renew ``--count`` held grants with one RenewLeases call: the etcd round trips it
   cost (EtcdClient.round_trips of the service's client; goal: <= 3) and its wall time.

Timings move with whatever else runs on the machine; the per-round figures are
printed so that a disturbed round is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import grpc

from mobkit.core.types import Acquired, LeaseGrant, Renewed
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.ops import compare_create_revision, put_op, range_op, txn_request
from mobkit.etcd.process import EtcdProcess
from mobkit.lease.client import GrpcLeaseProvider
from mobkit.lease.etcd_backend import CHUNK
from mobkit.lease.etcd_requests import acquire_request
from mobkit.server.config import load_settings
from mobkit.server.host import start_services

TTL = timedelta(seconds=120)
INSTANCE = "bench@127.0.0.1:7000"
IN_FLIGHT = 32  # chunks the raw floor keeps in flight, as EtcdLeaseProvider does
SETTLE = 1.0  # seconds of quiet before each timed batch: etcd commits its backend meanwhile


def _ids(stem: str, count: int) -> list[str]:
    return [f"{stem}-{i:06d}" for i in range(count)]


async def _timed(run: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await run()
    return time.perf_counter() - started


async def _raw_sequential(raw: EtcdClient, lease_id: int, keys: Sequence[str]) -> None:
    for key in keys:
        c = compare_create_revision(key, "=", 0)
        await raw.txn(txn_request([c], [put_op(key, INSTANCE, lease=lease_id)], [range_op(key)]))


async def _raw_batches(raw: EtcdClient, lease_id: int, keys: Sequence[str]) -> None:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(chunk: Sequence[str]) -> None:
        async with gate:
            request = acquire_request([k.encode() for k in chunk], INSTANCE.encode(), lease_id)
            await raw.txn(request)

    await asyncio.gather(*(one(keys[i : i + CHUNK]) for i in range(0, len(keys), CHUNK)))


def _list(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in values)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>9,.0f} acquisitions/s ({seconds:.3f} s)"


async def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks lease")
    parser.add_argument("--count", type=int, default=10_000, help="identities (default 10000)")
    parser.add_argument("--samples", type=int, default=400, help="latency samples (default 400)")
    parser.add_argument("--rounds", type=int, default=5, help="batch rounds (default 5)")
    parser.add_argument("--no-fsync", action="store_true", help="run etcd with --unsafe-no-fsync")
    args = parser.parse_args(argv)
    count, samples, rounds = args.count, args.samples, max(1, args.rounds)

    with tempfile.TemporaryDirectory(prefix="mobkit-bench-lease-") as tmp:
        etcd = EtcdProcess(tmp, unsafe_no_fsync=args.no_fsync)
        await etcd.start_async()
        try:
            await _run(etcd, count, samples, rounds, args.no_fsync)
        finally:
            etcd.kill()


async def _run(etcd: EtcdProcess, count: int, samples: int, rounds: int, no_fsync: bool) -> None:
    settings = load_settings(
        env={},
        overrides={
            "listen": "127.0.0.1:0",
            "etcd_endpoints": [etcd.endpoint],
            "etcd_prefix": "/bench",
        },
    )
    server, resources = await start_services(["lease"], settings)
    service_etcd = await resources.etcd()
    raw = await EtcdClient.connect([etcd.endpoint])
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    leases = GrpcLeaseProvider(channel)
    try:
        lease_id, _ = await raw.grant_lease(int(TTL.total_seconds()))
        print(
            f"etcd {etcd.endpoint} (fsync {'off' if no_fsync else 'on'}); "
            f"LeaseService on 127.0.0.1:{server.port}; {count:,} identities"
        )

        # Warm both paths (channels, the instance's etcd lease, code paths).
        await leases.acquire_leases(_ids("warm", 200), INSTANCE, TTL)
        await _raw_batches(raw, lease_id, [f"/raw/warm/{i}" for i in _ids("w", 200)])

        # 1. Batched acquire vs. its baselines. Each timed phase starts once etcd has
        #    flushed the previous phase's writes (else whichever runs second pays for
        #    them), and the order alternates between rounds; medians are reported.
        grpc_runs: list[float] = []
        floor_runs: list[float] = []
        grants: list[LeaseGrant] = []
        for r in range(rounds):
            ids = _ids(f"r{r}-agent", count)
            raw_keys = [f"/raw/batch/{i}" for i in ids]
            for phase in ("floor", "grpc") if r % 2 == 0 else ("grpc", "floor"):
                await asyncio.sleep(SETTLE)
                started = time.perf_counter()
                if phase == "grpc":
                    acquired = await leases.acquire_leases(ids, INSTANCE, TTL)
                    grpc_runs.append(time.perf_counter() - started)
                    grants = [g.grant for g in acquired if isinstance(g, Acquired)]
                else:
                    await _raw_batches(raw, lease_id, raw_keys)
                    floor_runs.append(time.perf_counter() - started)
            assert len(grants) == count, "every identity should be held by the bench instance"
        seq_ids = _ids("seq", count)
        seq_s = await _timed(
            lambda: _raw_sequential(raw, lease_id, [f"/raw/seq/{i}" for i in seq_ids])
        )
        grpc_s, floor_s = statistics.median(grpc_runs), statistics.median(floor_runs)
        print(f"\n1. acquire {count:,} identities (median of {rounds} rounds; sequential once)")
        print(f"   gRPC AcquireLeases, one call          {_rate(count, grpc_s)}")
        print(
            f"   raw sequential create-if-absent txns  {_rate(count, seq_s)}"
            f"   -> gRPC is {seq_s / grpc_s:.1f}x faster (goal >= 10x)"
        )
        print(
            f"   raw nested-txn batches (the floor)    {_rate(count, floor_s)}"
            f"   -> gRPC reaches {floor_s / grpc_s:.2f}x of its rate (goal >= 0.8x)"
        )
        print(f"   rounds: gRPC {_list(grpc_runs)} s; floor {_list(floor_runs)} s")

        # 2. Single-identity latency, gRPC and raw samples interleaved.
        grpc_lat, raw_lat = [], []
        for identity in _ids("single", samples):
            started = time.perf_counter()
            await leases.acquire_leases([identity], INSTANCE, TTL)
            grpc_lat.append(time.perf_counter() - started)
            key = f"/raw/single/{identity}"
            request = txn_request(
                [compare_create_revision(key, "=", 0)],
                [put_op(key, INSTANCE, lease=lease_id)],
                [range_op(key)],
            )
            started = time.perf_counter()
            await raw.txn(request)
            raw_lat.append(time.perf_counter() - started)
        grpc_p50, raw_p50 = statistics.median(grpc_lat), statistics.median(raw_lat)
        print(f"\n2. single-identity acquire, p50 of {samples} sequential calls each")
        print(f"   gRPC AcquireLeases p50   {_ms(grpc_p50)}")
        print(
            f"   raw etcd txn p50         {_ms(raw_p50)}"
            f"   -> ratio {grpc_p50 / raw_p50:.2f}x (goal <= 2.5x)"
        )

        # 3. Renewal of the last round's grants, each renewal one RenewLeases call.
        trips, walls, renewed = [], [], 0
        for _ in range(rounds):
            before = service_etcd.round_trips
            started = time.perf_counter()
            results = await leases.renew_leases(grants)
            walls.append(time.perf_counter() - started)
            trips.append(service_etcd.round_trips - before)
            renewed = sum(isinstance(r, Renewed) for r in results)
        print(f"\n3. renew {count:,} held grants (one RenewLeases call; {rounds} times)")
        print(
            f"   etcd round trips {_list(trips)} (goal <= 3); wall time median "
            f"{_ms(statistics.median(walls))} ({_list(walls)} s); "
            f"{renewed:,}/{count:,} Renewed"
        )
    finally:
        await channel.close()
        await server.stop(0)
        await resources.close()
        await raw.close()
