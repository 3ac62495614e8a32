"""Issue 14: a soak. Does an identity outlive its own history?

    ./dev bench soak [--turns 20000] [--identities 100] [--fleet-turns 20000] [--quick]

Everything runs as real processes: ``mobkit serve all`` on the etcd continuity backend,
each phase on a fresh etcd this benchmark starts in a temporary directory (fsync on,
MobKit's default etcd flags). A turn is ``remember <~100-byte note>`` to a ``notebook``
agent, with an idempotency key, as a retrying client sends it, so the state grows by
about 100 bytes a turn. Every figure is a ratio of two measurements from the same run:

1. growth: one identity, ``--turns`` turns in sequence.
   - Send p50 of the last ``--window`` turns against the first ``--window`` turns
     (goal <= 1.5x). Minutes lie between the two windows, so on a shared machine a
     change of load moves this ratio either way; beside it, the same comparison with
     the load held equal: ``--window`` turns of the grown identity interleaved, one by
     one, with the first ``--window`` turns of an identity that had none until then;
   - bytes the store wrote per turn, against the snapshot's size, once the snapshot
     passes 1 MiB (goal <= 0.05). Bytes are etcd's own counters, read from its
     Prometheus ``/metrics`` over a window of turns:
     ``etcd_debugging_mvcc_total_put_size_in_bytes`` (key + value of every put), with
     ``etcd_network_client_grpc_received_bytes_total`` beside it. The snapshot size is
     what ``LoadSessionSnapshot`` returns for the identity's session (the checkpoint
     envelope the orchestrator saved);
2. fleet: ``--fleet-turns`` turns spread round-robin over ``--identities`` identities,
   ``--concurrency`` in flight.
   - Send p50 of a ``ping`` on the etcd backend (before the soak, as
     ``bench orchestrator`` measures it) against a bare grpc.aio echo between two
     processes, one echo and one Send in turn so both see the same load (goal <= 4x; the
     ratio to the echo timed before the phases is printed beside it);
   - etcd's database size (Maintenance.Status ``dbSize``, ``dbSizeInUse`` beside it)
     after the turns, against the live data: the keys and values currently under the
     suite's prefix, read by a range over it (goal <= 3x).

A phase stops at its first failed turn (that identity's, in the fleet) or when its time
budget (``--growth-budget``, ``--fleet-budget``) runs out; the figures are then those
of the turns reached, and the goal line says why it is missed. ``--quick`` is a smoke
run (2,000 + 2,000 turns over 20 identities, shorter budgets).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from benchmarks._common import EchoServer, fmt_ms, latencies, pct, side_by_side, summary
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.process import EtcdProcess
from mobkit.gen.continuity.v1 import continuity_service_pb2 as csvc
from mobkit.gen.continuity.v1 import continuity_service_pb2_grpc as csvc_grpc
from mobkit.gen.etcd.api.etcdserverpb import rpc_pb2
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2_grpc as svc_grpc
from mobkit.testing.fleet import wait_fleet
from mobkit.testing.processes import ServeProcess
from mobkit.testing.suite import reason, send_request, stub, write_roster

MiB = 1024 * 1024
GOAL_GROWTH_P50 = 1.5
GOAL_WRITE_RATIO = 0.05
GOAL_DB_RATIO = 3.0
GOAL_ECHO_RATIO = 4.0
PUT_BYTES = "etcd_debugging_mvcc_total_put_size_in_bytes"
RECEIVED_BYTES = "etcd_network_client_grpc_received_bytes_total"
# The notebook's reply lists every note: ~2 MiB at turn 20,000 with 100-byte notes.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 256 * MiB)]


def note(turn: int, size: int) -> str:
    """A distinct note per turn (hex: no two are alike by accident)."""
    body = uuid.uuid5(uuid.NAMESPACE_OID, str(turn)).hex * (size // 32 + 1)
    return f"{turn:07d}-{body}"[:size]


def goal(met: bool | None, text: str, why: str = "") -> str:
    verdict = "not reached" if met is None else ("met" if met else "missed")
    return f"(goal {text}: {verdict}{', ' + why if why else ''})"


COMPACTION_INTERVAL = 10


def suite(tmp: Path, etcd: str, roster: Path, name: str) -> ServeProcess:
    args = [
        "--etcd-endpoints",
        etcd,
        "--etcd-prefix",
        f"/soak-{name}",
        "--roster",
        str(roster),
        "--data-dir",
        str(tmp / name),
        "--continuity-backend",
        "etcd",
        "--runtime-instance",
        name,
        "--log-level",
        "WARNING",
        # MobKit's compactor every 10 s (default 60 s): etcd keeps one to two intervals
        # of history, so a phase of a minute or two with 10 s compactions holds history
        # in the proportion to live data that hours of turns hold with the default.
        "--etcd-compaction-interval",
        str(COMPACTION_INTERVAL),
    ]
    return ServeProcess("all", args, log_dir=tmp, name=name)


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def etcd_metrics(
    endpoint: str, names: tuple[str, ...] = (PUT_BYTES, RECEIVED_BYTES)
) -> dict[str, float]:
    """The named counters from etcd's Prometheus ``/metrics`` (summed over labels)."""

    def scrape() -> str:
        with urllib.request.urlopen(f"{endpoint}/metrics", timeout=10) as reply:
            text: str = reply.read().decode()
            return text

    out = dict.fromkeys(names, 0.0)
    for line in (await asyncio.to_thread(scrape)).splitlines():
        name, _, value = line.partition(" ")
        base = name.split("{", 1)[0]
        if base in out:
            out[base] += float(value.split()[0])
    return out


async def snapshot_size(channel: grpc.aio.Channel, identity: str) -> int:
    """Bytes of the identity's snapshot as the continuity service returns it."""
    status = await stub(channel).GetIdentityStatus(
        svc.GetIdentityStatusRequest(identity=identity), timeout=10
    )
    loaded = await csvc_grpc.ContinuityStoreServiceStub(channel).LoadSessionSnapshot(
        csvc.LoadSessionSnapshotRequest(session_id=status.status.session_id), timeout=30
    )
    return len(loaded.snapshot.data)


async def live_data(endpoint: str, prefix: str) -> tuple[int, int]:
    """(keys, bytes of keys + values) under ``prefix`` now."""
    client = await EtcdClient.connect([endpoint], timeout=30)
    try:
        keys = size = 0
        async for kv in client.range_prefix(prefix, page_size=200):
            keys += 1
            size += len(kv.key) + len(kv.value)
        return keys, size
    finally:
        await client.close()


def failure(turn: int, err: grpc.aio.AioRpcError) -> str:
    try:
        why = reason(err)
    except (AssertionError, ValueError):
        why = err.code().name
    return f"turn {turn}: {why} ({err.details()})"


@dataclass
class Row:
    turn: int
    p50: float
    snapshot: int
    put_per_turn: float
    received_per_turn: float
    reply: int


@dataclass
class Growth:
    latencies: list[float] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    stopped: str = ""
    grown: list[float] = field(default_factory=list)
    """The interleaved check: the grown identity's turns, and a fresh one's."""
    fresh: list[float] = field(default_factory=list)


FRESH = "solo-fresh"
"""The identity of the interleaved check: in the roster, but no turns until then."""


async def interleaved(
    o: svc_grpc.OrchestratorServiceStub, identity: str, after: int, window: int, note_bytes: int
) -> tuple[list[float], list[float]]:
    """``window`` turns of ``identity`` (past turn ``after``) and the first ``window`` turns
    of :data:`FRESH`, alternating, so both see the same load."""
    grown: list[float] = []
    fresh: list[float] = []
    for i in range(1, window + 1):
        order = [(identity, after + i, grown), (FRESH, i, fresh)]
        for who, turn, into in order if i % 2 else order[::-1]:
            request = send_request(who, f"remember {note(turn, note_bytes)}", key=f"{who}-{turn}")
            began = time.perf_counter()
            await o.Send(request, timeout=60)
            into.append(time.perf_counter() - began)
    return grown, fresh


async def growth(
    address: str, etcd: str, identity: str, turns: int, window: int, note_bytes: int,
    budget: float,
) -> Growth:  # fmt: skip
    """``turns`` keyed turns in sequence; a row of figures at every twentieth of the
    run (and at the first window), each over the ``window`` turns before it."""
    stride = max(window, turns // 20)
    ends = set(range(stride, turns + 1, stride)) | {min(window, turns), turns}
    starts = {t - window for t in ends if t >= window}
    opened: dict[int, dict[str, float]] = {}
    out = Growth()
    deadline = time.monotonic() + budget
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as ch:
        o = stub(ch)
        for turn in range(1, turns + 1):
            if turn - 1 in starts:
                opened[turn - 1 + window] = await etcd_metrics(etcd)
            request = send_request(
                identity, f"remember {note(turn, note_bytes)}", key=f"{identity}-{turn}"
            )
            began = time.perf_counter()
            try:
                reply = await o.Send(request, timeout=60)
            except grpc.aio.AioRpcError as err:
                out.stopped = failure(turn, err)
                with contextlib.suppress(grpc.aio.AioRpcError):
                    size = await snapshot_size(ch, identity)
                    out.stopped += f"; the last checkpoint's snapshot: {size / 1024:,.0f} KiB"
                return out
            out.latencies.append(time.perf_counter() - began)
            if turn in ends and turn in opened:
                now = await etcd_metrics(etcd)
                before = opened.pop(turn)
                out.rows.append(
                    Row(
                        turn,
                        statistics.median(out.latencies[-window:]),
                        await snapshot_size(ch, identity),
                        (now[PUT_BYTES] - before[PUT_BYTES]) / window,
                        (now[RECEIVED_BYTES] - before[RECEIVED_BYTES]) / window,
                        len(reply.receipt.output.encode()),
                    )
                )
                print_row(out.rows[-1])
            if time.monotonic() > deadline:
                out.stopped = f"time budget of {budget:.0f} s spent at turn {turn}"
                return out
        if len(out.latencies) > window:
            out.grown, out.fresh = await interleaved(o, identity, turns, window, note_bytes)
    return out


def print_row(r: Row) -> None:
    print(
        f"  turn {r.turn:>6}: Send p50 {fmt_ms(r.p50)}, snapshot {r.snapshot / 1024:,.0f} KiB,"
        f" etcd put {r.put_per_turn / 1024:,.1f} KiB/turn"
        f" (gRPC received {r.received_per_turn / 1024:,.1f} KiB/turn), reply {r.reply / 1024:,.1f} KiB",
        flush=True,
    )


def report_growth(g: Growth, turns: int, window: int) -> None:
    reached = len(g.latencies)
    why = f"stopped at {g.stopped}" if g.stopped else ""
    if reached > window:
        first = statistics.median(g.latencies[:window])
        last = statistics.median(g.latencies[-window:])
        ratio = last / first
        met = ratio <= GOAL_GROWTH_P50 and reached == turns
        print(
            f"Send p50, turns {max(1, reached - window + 1):,}-{reached:,} vs turns 1-{window}"
            f" (baseline) of one growing identity: {fmt_ms(last)} vs {fmt_ms(first)}"
            f" = {ratio:.2f}x {goal(met, f'<= {GOAL_GROWTH_P50}x at turn {turns:,}', why)}"
        )
    if g.grown and g.fresh:
        grown, fresh = statistics.median(g.grown), statistics.median(g.fresh)
        print(
            f"  same load: {len(g.grown)} turns at turn {reached:,}+ interleaved with the first"
            f" {len(g.fresh)} turns of a fresh identity: {fmt_ms(grown)} vs {fmt_ms(fresh)}"
            f" = {grown / fresh:.2f}x"
        )
    else:
        print(
            f"Send p50 of one growing identity: only {reached} turns"
            f" {goal(False, f'<= {GOAL_GROWTH_P50}x at turn {turns:,}', why)}"
        )
    big = [r for r in g.rows if r.snapshot >= MiB]
    if big:
        worst = max(big, key=lambda r: r.put_per_turn / r.snapshot)
        last_row = big[-1]
        ratio = worst.put_per_turn / worst.snapshot
        print(
            f"etcd put bytes per turn vs the snapshot (baseline), state past 1 MiB:"
            f" worst at turn {worst.turn:,}: {worst.put_per_turn / 1024:,.1f} KiB vs"
            f" {worst.snapshot / 1024:,.0f} KiB = {ratio:.3f}; at turn {last_row.turn:,}:"
            f" {last_row.put_per_turn / last_row.snapshot:.3f}"
            f" {goal(ratio <= GOAL_WRITE_RATIO, f'<= {GOAL_WRITE_RATIO}')}"
        )
    else:
        largest = max((r.snapshot for r in g.rows), default=0)
        ratio_text = ""
        if g.rows:
            r = g.rows[-1]
            ratio_text = (
                f"; at turn {r.turn:,}: {r.put_per_turn / 1024:,.1f} KiB/turn vs"
                f" {r.snapshot / 1024:,.0f} KiB = {r.put_per_turn / max(1, r.snapshot):.3f}"
            )
        print(
            f"etcd put bytes per turn vs the snapshot: the snapshot never passed 1 MiB"
            f" (largest {largest / 1024:,.0f} KiB{ratio_text})"
            f" {goal(None if not g.stopped else False, f'<= {GOAL_WRITE_RATIO}', why)}"
        )


@dataclass
class FleetRun:
    done: int = 0
    seconds: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)
    first_failure: str = ""
    stopped: str = ""


async def fleet_turns(
    address: str, ids: list[str], turns: int, concurrency: int, note_bytes: int, budget: float
) -> FleetRun:
    """Turn ``n`` goes to ``ids[n % len(ids)]``; an identity is left alone after its
    first failure (a dead identity would make every later call wait out its deadline)."""
    run = FleetRun()
    dead: set[str] = set()
    counter = iter(range(turns))
    deadline = time.monotonic() + budget
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as ch:
        o = stub(ch)

        async def worker() -> None:
            for n in counter:
                if time.monotonic() > deadline:
                    run.stopped = f"time budget of {budget:.0f} s spent after {run.done:,} turns"
                    return
                identity = ids[n % len(ids)]
                if identity in dead:
                    continue
                turn = n // len(ids) + 1
                request = send_request(
                    identity, f"remember {note(n, note_bytes)}", key=f"{identity}-{turn}"
                )
                try:
                    await o.Send(request, timeout=60)
                    run.done += 1
                except grpc.aio.AioRpcError as err:
                    dead.add(identity)
                    run.failures[err.code().name] += 1
                    run.first_failure = run.first_failure or f"{identity} {failure(turn, err)}"

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        run.seconds = time.monotonic() - began
    return run


@contextlib.asynccontextmanager
async def fresh_suite(tmp: Path, name: str, ids: list[str]) -> AsyncIterator[tuple[str, str, int]]:
    """A fresh etcd and ``mobkit serve all`` on it with ``ids`` all Active:
    (etcd endpoint, suite address, suite pid)."""
    etcd = EtcdProcess(tmp / f"etcd-{name}")
    await etcd.start_async()
    try:
        roster = write_roster(tmp / f"{name}.toml", ids)
        with suite(tmp, etcd.endpoint, roster, name) as proc:
            async with grpc.aio.insecure_channel(proc.address or "") as ch:
                await wait_fleet(ch, len(ids), owners=1, timeout=120)
            yield etcd.endpoint, proc.address or "", proc.pid
    finally:
        await etcd.stop_async()


async def etcd_status(endpoint: str) -> rpc_pb2.StatusResponse:
    client = await EtcdClient.connect([endpoint], timeout=30)
    try:
        return await client.status()
    finally:
        await client.close()


async def phase_growth(tmp: Path, args: argparse.Namespace) -> None:
    print(
        f"growth: one notebook identity, {args.turns:,} keyed turns of ~{args.note_bytes}-byte"
        f" notes, etcd continuity, fresh etcd",
        flush=True,
    )
    async with fresh_suite(tmp, "growth", ["solo", FRESH]) as (etcd, address, pid):
        rss_before = rss_mib(pid)
        g = await growth(
            address, etcd, "solo", args.turns, args.window, args.note_bytes, args.growth_budget
        )
        rss_after = rss_mib(pid)
        status = await etcd_status(etcd)
    report_growth(g, args.turns, args.window)
    print(
        f"  suite RSS {rss_after:,.0f} MiB after the turns vs {rss_before:,.0f} MiB before"
        f" = {rss_after / rss_before:.2f}x; etcd dbSize {status.dbSize / MiB:,.1f} MiB"
        f" (in use {status.dbSizeInUse / MiB:,.1f} MiB)",
        flush=True,
    )


async def send_beside_echo(address: str, ids: list[str], n: int) -> tuple[list[float], list[float]]:
    """Send p50 and the bare echo's, one call of each in turn (see ``side_by_side``)."""
    with EchoServer() as echo:
        async with (
            grpc.aio.insecure_channel(echo.address) as echo_channel,
            grpc.aio.insecure_channel(address) as channel,
        ):
            o = stub(channel)

            async def send(i: int) -> object:
                return await o.Send(send_request(ids[i % len(ids)], "ping"), timeout=10)

            sends, echoes = await side_by_side([send, echo.call(echo_channel)], n)
    return sends, echoes


async def phase_fleet(tmp: Path, args: argparse.Namespace, bare: list[float]) -> None:
    ids = [f"f{i:03d}" for i in range(args.identities)]
    print(
        f"fleet: {args.fleet_turns:,} keyed turns over {len(ids)} notebook identities,"
        f" {args.concurrency} in flight, etcd continuity, fresh etcd",
        flush=True,
    )
    async with fresh_suite(tmp, "fleet", ids) as (etcd, address, pid):
        rss_before = rss_mib(pid)
        lat, echo_beside = await send_beside_echo(address, ids, args.echo_samples)
        ratio = pct(lat, 0.5) / pct(echo_beside, 0.5)
        print(
            f"bare echo, taken in turn with the Sends (baseline): {summary(echo_beside)}\n"
            f"Send (ping), etcd continuity: {summary(lat)} = {ratio:.1f}x the echo beside it"
            f" (p50), {pct(lat, 0.5) / pct(bare, 0.5):.1f}x the echo timed before the phases"
            f" {goal(ratio <= GOAL_ECHO_RATIO, f'<= {GOAL_ECHO_RATIO:.0f}x')}",
            flush=True,
        )
        run = await fleet_turns(
            address, ids, args.fleet_turns, args.concurrency, args.note_bytes, args.fleet_budget
        )
        status = await etcd_status(etcd)
        keys, live = await live_data(etcd, "/soak-fleet/")
        rss_after = rss_mib(pid)
    failed = ", ".join(f"{n} {code}" for code, n in run.failures.items())
    print(
        f"  {run.done:,} turns in {run.seconds:.0f} s ({run.done / max(run.seconds, 1e-9):.0f}/s)"
        + (f"; failed: {failed}, first {run.first_failure}" if failed else "")
        + (f"; {run.stopped}" if run.stopped else "")
    )
    ratio = status.dbSize / max(1, live)
    complete = run.done == args.fleet_turns
    why = "" if complete else f"only {run.done:,} of {args.fleet_turns:,} turns"
    print(
        f"etcd dbSize after the fleet turns vs the live data under the prefix (baseline):"
        f" {status.dbSize / MiB:,.1f} MiB vs {live / MiB:,.2f} MiB ({keys:,} keys)"
        f" = {ratio:.1f}x; dbSizeInUse {status.dbSizeInUse / MiB:,.1f} MiB"
        f" = {status.dbSizeInUse / max(1, live):.1f}x"
        f" {goal(ratio <= GOAL_DB_RATIO and complete, f'<= {GOAL_DB_RATIO:.0f}x', why)}"
    )
    print(
        f"  suite RSS {rss_after:,.0f} MiB after the turns vs {rss_before:,.0f} MiB before"
        f" = {rss_after / rss_before:.2f}x"
    )


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench soak")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: fewer turns, shorter budgets"
    )
    parser.add_argument("--turns", type=int, help="growth turns of one identity (20,000)")
    parser.add_argument("--window", type=int, default=100, help="turns per p50/bytes window")
    parser.add_argument("--identities", type=int, help="fleet identities (100)")
    parser.add_argument("--fleet-turns", type=int, help="fleet turns over all identities (20,000)")
    parser.add_argument("--concurrency", type=int, default=8, help="fleet turns in flight")
    parser.add_argument("--note-bytes", type=int, default=100)
    parser.add_argument("--echo-samples", type=int, help="Send and echo samples (1,000)")
    parser.add_argument("--growth-budget", type=float, help="seconds for the growth turns (400)")
    parser.add_argument("--fleet-budget", type=float, help="seconds for the fleet turns (200)")
    parser.add_argument("--skip-growth", action="store_true")
    parser.add_argument("--skip-fleet", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "turns": 2000 if quick else 20000,
        "identities": 20 if quick else 100,
        "fleet_turns": 2000 if quick else 20000,
        "echo_samples": 200 if quick else 1000,
        "growth_budget": 120.0 if quick else 400.0,
        "fleet_budget": 60.0 if quick else 200.0,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    tmp = Path(tempfile.mkdtemp(prefix="mobkit-bench-soak-"))
    began = time.monotonic()
    try:
        with EchoServer() as echo:
            async with grpc.aio.insecure_channel(echo.address) as ch:
                bare = await latencies(echo.call(ch), args.echo_samples)
        print(f"bare grpc.aio echo round trip (baseline): {summary(bare)}", flush=True)
        if not args.skip_growth:
            await phase_growth(tmp, args)
        if not args.skip_fleet:
            await phase_fleet(tmp, args, bare)
        print(f"soak done in {time.monotonic() - began:.0f} s")
    finally:
        if args.keep:
            print(f"data and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
