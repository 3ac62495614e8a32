"""Issue 7: scale-out and failover, measured with real replica processes.

    ./dev bench fleet [--identities N] [--failover N]

- cold bootstrap of N identities (default 10,000) across 3 replicas started
  together, to all Active, vs the floor: etcd alone writing the same number of
  lease keys and continuity records in batched transactions (raw client);
- failover of 1,000 identities after a SIGKILL of their owner, as a multiple of the
  lease TTL (goal <= TTL + 2 s), next to published peers' failure detection;
- a forwarded Send (through a replica that does not own the identity) vs a direct one,
  one of each in turn.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import grpc

from benchmarks._common import pct, side_by_side, summary
from mobkit.core.keyspace import Keyspace
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.ops import prefix_end, put_op, txn_op, txn_request
from mobkit.etcd.process import EtcdProcess
from mobkit.testing.fleet import Fleet, all_statuses, wait_fleet
from mobkit.testing.suite import send_request, stub, write_roster

NO_MESH = '[topology]\npolicies = ["none"]\n'


async def etcd_floor(endpoint: str, count: int) -> float:
    """Lease keys + records for ``count`` identities in 64-op txns, 8 in flight."""
    client = await EtcdClient.connect([endpoint])
    try:
        lease_id, _ = await client.grant_lease(30)
        ops = []
        for i in range(count):
            ops.append(put_op(f"/floor/leases/i{i}", b"holder", lease=lease_id))
            ops.append(
                put_op(f"/floor/continuity/i{i}", b'{"generation":0,"checkpoint_version":0}')
            )
        chunks = [ops[i : i + 64] for i in range(0, len(ops), 64)]
        sem = asyncio.Semaphore(8)

        async def one(chunk: list) -> None:
            async with sem:
                await client.txn(txn_request([], [txn_op([], chunk, [])], []))

        t = time.monotonic()
        await asyncio.gather(*(one(c) for c in chunks))
        return time.monotonic() - t
    finally:
        await client.close()


async def expiries(endpoint: str, prefix: str, identities: set[str]) -> float:
    """When the last of ``identities``' lease keys was deleted (monotonic clock)."""
    client = await EtcdClient.connect([endpoint])
    keys = Keyspace(prefix)
    key = keys.leases
    left = set(identities)
    try:
        async for event in client.watch(key, prefix_end(key), deletes_only=True):
            left.discard(keys.lease_identity(event.kv.key))
            if not left:
                return time.monotonic()
        raise AssertionError("watch ended")
    finally:
        await client.close()


async def start_together(fleet: Fleet, names: list[str], config: Path) -> list:
    procs = [fleet.add(n, ["--config", str(config)], wait=False) for n in names]
    await asyncio.gather(*(asyncio.to_thread(p.start, 300) for p in procs))
    return procs


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench fleet")
    parser.add_argument("--identities", type=int, default=10_000)
    parser.add_argument("--failover", type=int, default=1_000)
    parser.add_argument("--ttl", type=float, default=5.0)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="mobkit-bench-fleet-"))
    config = tmp / "mobkit.toml"
    config.write_text(NO_MESH)
    etcd = EtcdProcess(tmp / "etcd")
    await etcd.start_async()
    try:
        floor = await etcd_floor(etcd.endpoint, args.identities)
        print(f"etcd floor: {args.identities} lease keys + records in batched txns: {floor:.2f} s")

        ids = [f"b{i:05d}" for i in range(args.identities)]
        fleet = Fleet(tmp, etcd.endpoint, write_roster(tmp / "big.toml", ids), args.ttl)
        try:
            t = time.monotonic()
            procs = await start_together(fleet, ["b0", "b1", "b2"], config)
            async with grpc.aio.insecure_channel(procs[0].address) as ch:
                spread = await wait_fleet(ch, len(ids), owners=3, timeout=600)
            boot = time.monotonic() - t
            print(
                f"cold bootstrap, {len(ids)} identities across 3 replicas: {boot:.1f} s"
                f" = {boot / floor:.1f}x the etcd floor (goal <= 30 s); spread {dict(spread)}"
            )
        finally:
            fleet.close()

        ids = [f"f{i:05d}" for i in range(args.failover)]
        fleet = Fleet(tmp, etcd.endpoint, write_roster(tmp / "fo.toml", ids), args.ttl)
        fleet.prefix += "-fo"
        try:
            a, b = await start_together(fleet, ["f0", "f1"], config)
            async with grpc.aio.insecure_channel(b.address) as ch:
                await wait_fleet(ch, len(ids), owners=2, timeout=300)
                owned = {s.identity: s.owner for s in await all_statuses(ch)}
                mine = [i for i, o in owned.items() if o.startswith("f0~")]
                theirs = [i for i, o in owned.items() if o.startswith("f1~")]
                async with grpc.aio.insecure_channel(a.address) as cha:
                    # One of each in turn, so both see the same load.
                    direct, forwarded = await side_by_side(
                        [
                            lambda k: stub(ch).Send(
                                send_request(theirs[k % len(theirs)], "x"), timeout=10
                            ),
                            lambda k: stub(cha).Send(
                                send_request(theirs[k % len(theirs)], "x"), timeout=10
                            ),
                        ],
                        600,
                    )
                print(f"Send direct to the owner: {summary(direct)}")
                print(
                    f"Send forwarded by a non-owner: {summary(forwarded)}"
                    f"  = {pct(forwarded, 0.5) / pct(direct, 0.5):.2f}x direct p50"
                )
                expired = asyncio.create_task(expiries(etcd.endpoint, fleet.prefix, set(mine)))
                await asyncio.sleep(0.5)  # the watch is in place
                t = time.monotonic()
                a.kill()
                await wait_fleet(ch, len(ids), owners=1, timeout=300)
                took = time.monotonic() - t
                gone = await asyncio.wait_for(expired, 60) - t
            print(
                f"failover of {len(mine)} identities (of {len(ids)}) after SIGKILL: {took:.1f} s"
                f" = {took / args.ttl:.2f}x the {args.ttl:.0f} s lease TTL"
                f" (goal <= TTL + 2 s = {args.ttl + 2:.0f} s);"
                f" the last of their leases expired after {gone:.1f} s,"
                f" all were Active {took - gone:.1f} s later (as seen by polling)"
            )
            print(
                "  published peers: Orleans default failure detection ~15 s;"
                " Kubernetes leader election commonly 15 s leases"
            )
        finally:
            fleet.close()
    finally:
        await etcd.stop_async()
