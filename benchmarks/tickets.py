"""Issue 18: a ticket soak. Do turn tickets leave anything behind?

    ./dev bench tickets [--tickets 100000] [--identities 20] [--retention 20] [--quick]

``mobkit serve all`` on the etcd continuity backend and a fresh etcd of its own, as
real processes, with ``--idempotency-retention`` (how long a ticket lives) cut to
``--retention`` seconds so the run spans many retentions. ``--tickets`` tickets go
round-robin over ``--identities`` notebook identities, ``--concurrency`` in flight;
each is ``SubmitTurn`` of ``t<n>`` (every other one with an idempotency key,
so both kinds of ticket are soaked: a keyless one that commits at once is its receipt
alone; a keyed one writes a ticket record and an open marker too), then ``WatchTurn``
until it finishes. Every 25th keyed ticket is submitted again with its key.

While it runs, every ``--sample`` seconds, it reads from etcd how many ticket records,
open markers and receipts exist (a range with ``count_only`` over each prefix) and the
suite's RSS. Every figure is a ratio of two measurements from this run:

- the keys a ticket leaves, at the end of the submissions, against the tickets
  submitted within the last retention (the most that may still be kept); goal: the
  ratio stays near 1 however long the run, not growing with the tickets submitted;
- once the last retention has passed with no new ticket, what is left (goal: no
  ticket record and no open marker; receipts go at the store's next sweep);
- suite RSS at the end vs after the first retention (goal <= 1.2x);
- ticket latency (SubmitTurn + WatchTurn) p50 of the last 500 vs the first 500;
- exactly once: each identity's checkpoint version (one per turn run) must have
  grown by the distinct tickets sent to it (a resubmitted key replays, it does not
  run again).

A notebook keeps only the last such message, so its state (and the suite's memory
for it) stays the same size: what grows, if anything, is the tickets'.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from benchmarks._common import pct, summary
from benchmarks.soak import goal, rss_mib
from mobkit.core.keyspace import Keyspace
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.process import EtcdProcess
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.testing.fleet import wait_fleet
from mobkit.testing.processes import ServeProcess
from mobkit.testing.suite import stub, text_input, write_roster
from mobkit.testing.tickets import ticket_keys

PREFIX = "/soak-tickets"
GOAL_RSS = 1.2
REPLAY_EVERY = 25


@dataclass
class Sample:
    seconds: float
    done: int
    records: int
    markers: int
    receipts: int
    rss: float


@dataclass
class Run:
    submitted: list[float] = field(default_factory=list)  # monotonic time of each
    latencies: list[float] = field(default_factory=list)
    per_identity: Counter[str] = field(default_factory=Counter)
    replays: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    first_failure: str = ""


def suite(tmp: Path, etcd: str, roster: Path, retention: float) -> ServeProcess:
    args = [
        "--etcd-endpoints", etcd, "--etcd-prefix", PREFIX, "--roster", str(roster),
        "--data-dir", str(tmp / "suite"), "--continuity-backend", "etcd",
        "--idempotency-retention", str(retention), "--log-level", "WARNING",
    ]  # fmt: skip
    return ServeProcess("all", args, log_dir=tmp, name="tickets")


async def counts(client: EtcdClient) -> tuple[int, int, int]:
    return await ticket_keys(client, Keyspace(PREFIX))


async def tickets(run: Run, address: str, ids: list[str], total: int, concurrency: int) -> None:
    counter = iter(range(total))
    async with grpc.aio.insecure_channel(address) as ch:
        o = stub(ch)

        async def one(n: int, key: str | None) -> svc.TurnTicket:
            identity = ids[n % len(ids)]
            request = svc.SubmitTurnRequest(identity=identity, input=text_input(f"t{n}", key=key))
            turn = (await o.SubmitTurn(request, timeout=60)).turn
            if turn.state in (svc.TURN_STATE_SUCCEEDED, svc.TURN_STATE_FAILED):
                return turn
            watch = o.WatchTurn(svc.WatchTurnRequest(turn_id=turn.turn_id), timeout=60)
            items = [item async for item in watch]
            return items[-1].turn

        async def worker() -> None:
            for n in counter:
                key = f"k-{n}" if n % 2 else None
                began = time.monotonic()
                run.submitted.append(began)
                try:
                    turn = await one(n, key)
                    run.latencies.append(time.monotonic() - began)
                    if turn.state != svc.TURN_STATE_SUCCEEDED:
                        raise RuntimeError(f"ticket {n} ended {svc.TurnState.Name(turn.state)}")
                    run.per_identity[ids[n % len(ids)]] += 1
                    if key is not None and n % (2 * REPLAY_EVERY) == 1:
                        again = await one(n, key)
                        if again.turn_id != turn.turn_id:
                            raise RuntimeError(f"ticket {n}'s key gave {again.turn_id}")
                        run.replays += 1
                except (grpc.aio.AioRpcError, RuntimeError) as err:
                    name = err.code().name if isinstance(err, grpc.aio.AioRpcError) else "WRONG"
                    run.failures[name] += 1
                    run.first_failure = run.first_failure or f"ticket {n}: {err}"

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def checkpoints(address: str, ids: list[str]) -> dict[str, int]:
    """Each identity's checkpoint version: the turns it has run."""
    async with grpc.aio.insecure_channel(address) as ch:
        o = stub(ch)
        out = {}
        for identity in ids:
            request = svc.GetIdentityStatusRequest(identity=identity)
            out[identity] = (
                await o.GetIdentityStatus(request, timeout=60)
            ).status.checkpoint_version
    return out


async def sampler(
    client: EtcdClient, pid: int, began: float, run: Run, rows: list[Sample], every: float
) -> None:
    while True:
        records, markers, receipts = await counts(client)
        rows.append(
            Sample(
                time.monotonic() - began,
                len(run.latencies),
                records,
                markers,
                receipts,
                rss_mib(pid),
            )
        )
        await asyncio.sleep(every)


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench tickets")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5,000 tickets")
    parser.add_argument("--tickets", type=int, help="tickets in all (100,000)")
    parser.add_argument("--identities", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--retention", type=float, default=20.0, help="seconds a ticket lives")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    total = args.tickets or (5000 if args.quick else 100_000)
    retention = args.retention
    ids = [f"t{i:02d}" for i in range(args.identities)]
    tmp = Path(tempfile.mkdtemp(prefix="mobkit-bench-tickets-"))
    etcd = EtcdProcess(tmp / "etcd")
    await etcd.start_async()
    print(
        f"tickets: {total:,} over {len(ids)} notebook identities, {args.concurrency} in flight,"
        f" half keyed, retention {retention:.0f} s, etcd continuity, fresh etcd",
        flush=True,
    )
    try:
        roster = write_roster(tmp / "roster.toml", ids)
        with suite(tmp, etcd.endpoint, roster, retention) as proc:
            async with grpc.aio.insecure_channel(proc.address or "") as ch:
                await wait_fleet(ch, len(ids), owners=1, timeout=120)
            client = await EtcdClient.connect([etcd.endpoint], timeout=30)
            try:
                await report(client, proc, ids, total, args, retention)
            finally:
                await client.close()
    finally:
        await etcd.stop_async()
        if args.keep:
            print(f"data and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


async def report(
    client: EtcdClient,
    proc: ServeProcess,
    ids: list[str],
    total: int,
    args: argparse.Namespace,
    retention: float,
) -> None:
    address = proc.address or ""
    rows: list[Sample] = []
    run = Run()
    began = time.monotonic()
    before = await checkpoints(address, ids)
    sampling = asyncio.create_task(sampler(client, proc.pid, began, run, rows, args.sample))
    try:
        await tickets(run, address, ids, total, args.concurrency)
    finally:
        sampling.cancel()
    ended = time.monotonic()
    records, markers, receipts = await counts(client)
    rss_end = rss_mib(proc.pid)
    rows.append(Sample(ended - began, len(run.latencies), records, markers, receipts, rss_end))
    seconds = ended - began
    print(
        f"  {len(run.latencies):,} tickets in {seconds:.0f} s ({len(run.latencies) / seconds:.0f}/s)"
    )
    print("  elapsed  done     records  markers  receipts  RSS")
    for r in rows:
        print(
            f"  {r.seconds:6.0f} s {r.done:7,} {r.records:9,} {r.markers:8,}"
            f" {r.receipts:9,}  {r.rss:.0f} MiB"
        )
    if run.failures:
        failed = ", ".join(f"{n} {code}" for code, n in run.failures.items())
        print(f"  failed: {failed}; first {run.first_failure}")
    recent = sum(1 for t in run.submitted if t >= ended - retention)
    keyed_recent = (recent + 1) // 2
    print(
        f"ticket records + open markers at the end vs the keyed tickets submitted within the"
        f" last retention (baseline): {records + markers:,} vs {keyed_recent:,}"
        f" = {(records + markers) / max(1, keyed_recent):.2f}x (records alone"
        f" {records / max(1, keyed_recent):.2f}x)"
    )
    print(
        f"receipts at the end vs every ticket submitted within the last retention"
        f" (baseline): {receipts:,} vs {recent:,} = {receipts / max(1, recent):.2f}x;"
        f" vs all {len(run.submitted):,} tickets submitted:"
        f" {receipts / max(1, len(run.submitted)):.2f}x"
    )
    settled = [r for r in rows if r.seconds >= retention]
    if settled:
        first = settled[0].rss
        print(
            f"suite RSS at the end vs after the first retention (baseline): {rss_end:.0f} MiB"
            f" vs {first:.0f} MiB = {rss_end / first:.2f}x"
            f" {goal(rss_end / first <= GOAL_RSS, f'<= {GOAL_RSS}x')}"
        )
    if len(run.latencies) >= 1000:
        head, tail = run.latencies[:500], run.latencies[-500:]
        print(
            f"ticket p50, last 500 vs first 500 (baseline): {summary(tail)} vs"
            f" {summary(head)} = {pct(tail, 0.5) / pct(head, 0.5):.2f}x"
        )
    # Exactly once: a turn per distinct ticket, however often a key came again.
    after = await checkpoints(address, ids)
    ran = {identity: after[identity] - before[identity] for identity in ids}
    wrong = {i: (ran[i], run.per_identity[i]) for i in ids if ran[i] != run.per_identity[i]}
    print(
        f"exactly once: {sum(run.per_identity.values()):,} tickets, {run.replays:,} keys"
        f" submitted again; turns run per identity equal its tickets for"
        f" {len(ids) - len(wrong)} of {len(ids)} identities"
        + (f"; differing (turns, tickets): {wrong}" if wrong else "")
        + f" {goal(not wrong and not run.failures, 'all, no failure')}"
    )
    # After one more retention with no new ticket, nothing of them should be left.
    loop_began = time.monotonic()
    while True:
        records, markers, receipts = await counts(client)
        waited = time.monotonic() - ended
        if (records == 0 and markers == 0) or waited > 2 * retention + 30:
            break
        await asyncio.sleep(1.0)
    print(
        f"{waited:.0f} s after the last ticket ({waited / retention:.1f} retentions):"
        f" {records:,} ticket records, {markers:,} open markers, {receipts:,} receipts left"
        f" {goal(records == 0 and markers == 0, 'no ticket record or marker')}"
        f" (waited {time.monotonic() - loop_began:.0f} s)"
    )
