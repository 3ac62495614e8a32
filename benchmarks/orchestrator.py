"""Issue 6: Send end to end vs a bare gRPC round trip; throughput; cold start.

    ./dev bench orchestrator [--quick]

Every figure is printed next to its baseline from the same run:
- Send p50/p99 (client -> orchestrator -> runtime turn -> fenced checkpoint -> receipt),
  with in-process providers (embedded default: SQLite continuity) and with every
  provider in its own process (gRPC hops), vs a bare grpc.aio echo round trip
  between two processes, one echo and one Send in turn (so both see the same load;
  the ratio to the echo timed before them is printed too);
- throughput with 64 concurrent senders over 100 identities;
- cold start of a 1,000-identity roster to all Active, and the orchestrator's RSS
  per Active identity (RSS with 1,000 minus RSS with 1, divided by 999).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import grpc

from benchmarks._common import EchoServer, fmt_ms, latencies, pct, rss_kib, side_by_side, summary
from mobkit.etcd.process import EtcdProcess
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.testing.fleet import wait_fleet
from mobkit.testing.processes import ServeProcess
from mobkit.testing.suite import send_request, stub, write_roster

PROVIDERS = ("lease", "continuity", "roster", "topology", "customizer", "runtime")


def suite(tmp: Path, etcd: str, roster: Path, name: str, extra: list[str]) -> ServeProcess:
    args = [
        "--etcd-endpoints",
        etcd,
        "--etcd-prefix",
        f"/bench-{uuid.uuid4().hex[:6]}",
        "--roster",
        str(roster),
        "--data-dir",
        str(tmp / name),
        "--log-level",
        "WARNING",
        "--runtime-instance",
        name,
        *extra,
    ]
    return ServeProcess("all", args, log_dir=tmp, name=name)


def split_suite(tmp: Path, etcd: str, roster: Path) -> list[ServeProcess]:
    prefix = f"/bench-{uuid.uuid4().hex[:6]}"
    common = [
        "--etcd-endpoints",
        etcd,
        "--etcd-prefix",
        prefix,
        "--roster",
        str(roster),
        "--data-dir",
        str(tmp / "split"),
        "--log-level",
        "WARNING",
    ]
    procs = [ServeProcess(k, common, log_dir=tmp, name=f"split-{k}").start(60) for k in PROVIDERS]
    addrs = [f"--{k}-addr={p.address}" for k, p in zip(PROVIDERS, procs, strict=True)]
    orch = ServeProcess(
        "orchestrator",
        [*common, *addrs, "--runtime-instance", "split"],
        log_dir=tmp,
        name="split-orchestrator",
    ).start(60)
    return [*procs, orch]


async def send_latency(
    address: str, identities: list[str], n: int
) -> tuple[list[float], list[float]]:
    """Send latencies and the bare echo's, taken in turn (``side_by_side``)."""
    with EchoServer() as echo:
        async with (
            grpc.aio.insecure_channel(address) as ch,
            grpc.aio.insecure_channel(echo.address) as echo_channel,
        ):
            o = stub(ch)

            async def one(i: int) -> object:
                request = send_request(identities[i % len(identities)], "ping")
                return await o.Send(request, timeout=10)

            sends, echoes = await side_by_side([one, echo.call(echo_channel)], n)
    return sends, echoes


def against_echo(name: str, lat: list[float], beside: list[float], bare: list[float]) -> str:
    ratio = pct(lat, 0.5) / pct(beside, 0.5)
    return (
        f"{name}: {summary(lat)}  = {ratio:.1f}x the echo beside it (p50 {fmt_ms(pct(beside, 0.5))}),"
        f" {pct(lat, 0.5) / pct(bare, 0.5):.1f}x the echo timed before"
    )


async def throughput(address: str, identities: list[str], senders: int, seconds: float) -> float:
    done = 0
    stop = time.monotonic() + seconds
    async with grpc.aio.insecure_channel(address) as ch:
        o = stub(ch)

        async def sender(k: int) -> None:
            nonlocal done
            i = k
            while time.monotonic() < stop:
                await o.Send(send_request(identities[i % len(identities)], "ping"), timeout=30)
                done += 1
                i += senders

        t = time.monotonic()
        await asyncio.gather(*(sender(k) for k in range(senders)))
        return done / (time.monotonic() - t)


async def cold_start(tmp: Path, etcd: str, count: int, name: str) -> tuple[float, int]:
    ids = [f"c{i:05d}" for i in range(count)]
    roster = write_roster(tmp / f"{name}.toml", ids)
    t = time.monotonic()
    config = tmp / "no-mesh.toml"  # per-identity cost, not a 500k-edge full mesh
    config.write_text('[topology]\npolicies = ["none"]\n')
    proc = suite(
        tmp, etcd, roster, name, ["--continuity-backend", "sqlite", "--config", str(config)]
    ).start(300)
    try:
        async with grpc.aio.insecure_channel(proc.address or "") as ch:
            await wait_fleet(ch, count, owners=1, timeout=600)
        elapsed = time.monotonic() - t
        await asyncio.sleep(1.0)
        return elapsed, rss_kib(proc.pid)
    finally:
        proc.stop()


async def report_cold_start(tmp: Path, etcd: str, count: int) -> None:
    _, rss_one = await cold_start(tmp, etcd, 1, "cold-1")
    elapsed, rss_many = await cold_start(tmp, etcd, count, f"cold-{count}")
    per = (rss_many - rss_one) / max(1, count - 1)
    print(
        f"cold start, {count} identities to all Active: {elapsed:.1f} s"
        f"  (baseline: 1 identity, RSS {rss_one / 1024:.0f} MiB)"
    )
    print(
        f"  RSS per Active identity: {per:.1f} KiB (goal <= 20 KiB)"
        f"  [{rss_many / 1024:.0f} MiB with {count} vs {rss_one / 1024:.0f} MiB with 1]"
    )


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench orchestrator")
    parser.add_argument("--quick", action="store_true", help="fewer samples (smoke run)")
    parser.add_argument("--cold-start-only", action="store_true")
    args = parser.parse_args(argv)
    n = 200 if args.quick else 1000
    tmp = Path(tempfile.mkdtemp(prefix="mobkit-bench-"))
    etcd = EtcdProcess(tmp / "etcd")
    await etcd.start_async()
    try:
        ids = [f"a{i:03d}" for i in range(100)]
        roster = write_roster(tmp / "roster.toml", ids)

        if args.cold_start_only:
            await report_cold_start(tmp, etcd.endpoint, 200 if args.quick else 1000)
            return
        with EchoServer() as echo:
            async with grpc.aio.insecure_channel(echo.address) as ch:
                bare = await latencies(echo.call(ch), n)
        print(f"bare grpc.aio echo round trip (baseline): {summary(bare)}")

        for backend in ("sqlite", "etcd"):
            with suite(
                tmp, etcd.endpoint, roster, f"inproc-{backend}", ["--continuity-backend", backend]
            ) as proc:
                async with grpc.aio.insecure_channel(proc.address or "") as ch:
                    await wait_fleet(ch, len(ids), owners=1, timeout=120)
                lat, beside = await send_latency(proc.address or "", ids, n)
                name = f"Send, in-process providers, {backend} continuity"
                print(against_echo(name, lat, beside, bare) + " (goal <= 4x)")
                tput = await throughput(proc.address or "", ids, 64, 5 if args.quick else 15)
                print(
                    f"  throughput, 64 senders over 100 identities: {tput:.0f} Send/s"
                    f"  (bare echo sequential: {1 / pct(bare, 0.5):.0f} calls/s)"
                )

        procs = split_suite(tmp, etcd.endpoint, roster)
        try:
            orch = procs[-1]
            async with grpc.aio.insecure_channel(orch.address or "") as ch:
                await wait_fleet(ch, len(ids), owners=1, timeout=120)
            lat, beside = await send_latency(orch.address or "", ids, n)
            print(against_echo("Send, split gRPC providers (sqlite)", lat, beside, bare))
        finally:
            for p in procs:
                p.stop()

        await report_cold_start(tmp, etcd.endpoint, 200 if args.quick else 1000)
    finally:
        await etcd.stop_async()


__all__ = ["main", "svc"]
