"""The client commands: ``status``, ``send``, ``dispatch``, ``events``, ``reconcile``,
``reset`` / ``retire`` / ``suspend`` / ``resume``, ``leases``, ``topology``.

Each is ``add_<name>(subparsers)`` registering an ``async`` handler that gets a
:class:`Run` (the parsed flags and a connected :class:`AsyncMobKit`) and returns
an exit code. Results go to stdout (a table or text, or JSON with ``--json``);
notices and progress go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TextIO

from mobkit.cli import exit_codes
from mobkit.cli.connect import RECONCILE_TIMEOUT, add_client_options
from mobkit.cli.output import (
    STATUS_HEADERS,
    condition_line,
    event_line,
    failure_line,
    print_json,
    roster_problem_lines,
    seconds,
    status_line,
    status_row,
    table,
)
from mobkit.client import AsyncMobKit
from mobkit.client.types import BackendCondition
from mobkit.core.errors import MobKitError
from mobkit.core.types import (
    DispatchOrigin,
    DispatchReceipt,
    IdentityLifecycleState,
    MobStructuralEventEnvelope,
)
from mobkit.wire.errors import RemoteError

PROGRESS_INTERVAL = 1.0


@dataclass
class Run:
    args: argparse.Namespace
    mk: AsyncMobKit
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    @property
    def json(self) -> bool:
        return bool(self.args.json)

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self.err, flush=True)


Handler = Callable[[Run], Awaitable[int]]


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Handler,
    help: str,
    *,
    timeout: float | None = None,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help, description=help)
    add_client_options(parser, top_level=False)
    parser.set_defaults(kind="client", client_handler=handler, default_timeout=timeout)
    return parser


def _label(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key, val


# -- status ----------------------------------------------------------------------------

STATES = [s.value for s in IdentityLifecycleState]


async def status(run: Run) -> int:
    args = run.args
    conditions: list[BackendCondition] = []
    problem = None
    if args.identities:
        statuses = [await run.mk.status(i) for i in args.identities]
    else:
        state = IdentityLifecycleState(args.state) if args.state else None
        statuses, token = [], ""
        while True:
            page = await run.mk.list_statuses_page(
                state=state, labels=dict(args.label or []), page_token=token
            )
            statuses.extend(page.items)
            conditions = conditions or list(page.backend_conditions)
            problem = problem or page.roster_problem
            token = page.next_page_token
            if not token:
                break
    for condition in conditions:  # one line each, on stderr, in both formats
        run.note(condition_line(condition))
    for line in roster_problem_lines(problem) if problem else ():
        run.note(line)
    if run.json:
        print_json(statuses, run.out)
        return exit_codes.OK
    run.print(table(STATUS_HEADERS, [status_row(s) for s in statuses]))
    for why in filter(None, map(failure_line, statuses)):
        run.print(f"  {why}")
    counts = Counter(s.state.value for s in statuses)
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    run.print(f"{len(statuses)} identities" + (f" ({summary})" if summary else ""))
    return exit_codes.OK


def add_status(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _command(
        sub, "status", status, "identities: state, owner, fencing token, version, lease TTL"
    )
    p.add_argument(
        "identities", nargs="*", metavar="IDENTITY", help="only these identities [default: all]"
    )
    p.add_argument(
        "--state",
        choices=STATES,
        metavar="STATE",
        help=f"only identities in this state: {', '.join(STATES)} [default: any]",
    )
    p.add_argument(
        "--label",
        action="append",
        type=_label,
        metavar="KEY=VALUE",
        help="only identities with this label (repeatable: all must match) [default: any]",
    )


# -- send, dispatch ------------------------------------------------------------------------


def _receipt(run: Run, receipt: DispatchReceipt) -> int:
    if run.json:
        print_json(receipt, run.out)
    else:
        run.note(
            f"{receipt.identity}: session {receipt.session_id}, "
            f"fencing token {receipt.fencing_token}, checkpoint {receipt.checkpoint_version}"
        )
        run.print(receipt.output)
    return exit_codes.OK


async def send(run: Run) -> int:
    a = run.args
    if a.stream:
        return await _streamed(run, dispatch=False)
    receipt = await run.mk.send(
        a.identity, a.text, idempotency_key=a.key, correlation_id=a.correlation_id
    )
    return _receipt(run, receipt)


async def _streamed(run: Run, *, dispatch: bool) -> int:
    """Pieces of the reply on stdout as they arrive, tool calls on stderr, then the
    receipt (its output too when the agent streamed none)."""
    a = run.args
    streamed = False
    origin = DispatchOrigin(getattr(a, "origin", DispatchOrigin.SYSTEM.value))
    async for item in run.mk.send_stream(
        a.identity,
        a.text,
        dispatch=dispatch,
        origin=origin,
        idempotency_key=a.key,
        correlation_id=a.correlation_id,
    ):
        if isinstance(item, DispatchReceipt):
            if run.json:
                print_json(item, run.out)
                return exit_codes.OK
            if streamed:
                run.print()
                run.note(
                    f"{item.identity}: session {item.session_id}, fencing token "
                    f"{item.fencing_token}, checkpoint {item.checkpoint_version}"
                )
                return exit_codes.OK
            return _receipt(run, item)
        if run.json:
            print_json(item, run.out)
        elif item.kind == "delta":
            streamed = True
            print(item.text, end="", file=run.out, flush=True)
        else:
            run.note(f"[{item.kind.replace('_', ' ')}: {item.text}]")
    return exit_codes.ERROR  # the stream ended without a receipt


async def dispatch(run: Run) -> int:
    a = run.args
    if a.stream:
        return await _streamed(run, dispatch=True)
    receipt = await run.mk.dispatch(
        a.identity,
        a.text,
        origin=DispatchOrigin(a.origin),
        idempotency_key=a.key,
        correlation_id=a.correlation_id,
    )
    return _receipt(run, receipt)


def _turn_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("identity", metavar="IDENTITY", help="the agent that runs the turn")
    p.add_argument("text", metavar="TEXT", help="the turn's input")
    p.add_argument(
        "--key",
        metavar="KEY",
        help="idempotency key: a repeated key returns the first receipt (and makes the "
        "call safe to retry) [default: none]",
    )
    p.add_argument(
        "--correlation-id",
        metavar="ID",
        help="echoed in the receipt, for tracing [default: none]",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="print the reply as the agent produces it (SendStream / DispatchStream) "
        "[default: off]",
    )


def add_turns(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _turn_arguments(_command(sub, "send", send, "run a turn on an addressable identity"))
    p = _command(sub, "dispatch", dispatch, "run a turn on any identity, internal-only too")
    _turn_arguments(p)
    p.add_argument(
        "--origin",
        choices=[o.value for o in DispatchOrigin],
        default=DispatchOrigin.SYSTEM.value,
        metavar="ORIGIN",
        help=f"who originates the input: {', '.join(o.value for o in DispatchOrigin)} "
        f"[default: {DispatchOrigin.SYSTEM.value}]",
    )


# -- events -----------------------------------------------------------------------------------


async def events(run: Run) -> int:
    a = run.args
    emitted = 0

    def emit(event: MobStructuralEventEnvelope) -> bool:
        nonlocal emitted
        if run.json:
            print_json(event, run.out)
        else:
            run.print(event_line(event))
        emitted += 1
        return a.limit is not None and emitted >= a.limit

    if a.limit is not None and a.limit <= 0:
        return exit_codes.OK
    if not a.follow:
        async for event in run.mk.list_events(a.after):
            if emit(event):
                break
        return exit_codes.OK

    noticed: set[int] = set()

    def reconnecting(cursor: int, error: BaseException | None) -> None:
        if cursor in noticed:  # one notice per outage, not per attempt
            return
        noticed.add(cursor)
        why = "the server ended the stream" if error is None else "connection lost"
        run.note(f"mobkit events: {why}; resuming after cursor {cursor}")

    async with run.mk.events(a.after, on_reconnect=reconnecting) as stream:
        async for event in stream:
            if emit(event):
                break
    return exit_codes.OK


def add_events(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _command(sub, "events", events, "structural events after a cursor")
    p.add_argument(
        "--after",
        type=int,
        default=0,
        metavar="N",
        help="only events with cursor > N [default: 0, from the oldest kept]",
    )
    p.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="keep following; resumes from the last cursor if the server restarts "
        "[default: off, stop at the newest]",
    )
    p.add_argument("--limit", type=int, metavar="N", help="stop after N events [default: no limit]")


# -- reconcile ------------------------------------------------------------------------------------


class _Progress:
    """Counts of identities by state while a reconcile runs (stderr): rewritten in place
    on a terminal, a line per change otherwise."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.live = run.err.isatty()
        self.last = ""

    async def show(self) -> None:
        counts: Counter[str] = Counter()
        try:
            async for s in self.run.mk.list_statuses(page_size=1000):
                counts[s.state.value] += 1
        except MobKitError:
            return  # progress is best effort; the reconcile call reports real failures
        if not counts:
            return
        others = ", ".join(
            f"{n} {state}" for state, n in sorted(counts.items()) if state != "active"
        )
        line = f"reconciling: {counts['active']}/{sum(counts.values())} active" + (
            f", {others}" if others else ""
        )
        if self.live:
            print(f"\r{line}\x1b[K", end="", file=self.run.err, flush=True)
        elif line != self.last:
            self.run.note(line)
        self.last = line

    async def follow(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.show()

    def done(self) -> None:
        if self.live and self.last:
            print(file=self.run.err, flush=True)


async def reconcile(run: Run) -> int:
    progress = None if run.json else _Progress(run)
    ticker = None
    if progress is not None:
        await progress.show()  # where it starts, before the cycle runs
        ticker = asyncio.create_task(progress.follow(PROGRESS_INTERVAL))
    try:
        result = await run.mk.reconcile()
    finally:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
    if progress is not None:
        await progress.show()  # where it ended
        progress.done()
    code = exit_codes.PARTIAL if result.failed else exit_codes.OK
    if result.roster_problem is not None:
        code = exit_codes.INVALID  # the roster as written was refused: fix it first
    if run.json:
        print_json(result, run.out)
        return code
    run.print(
        f"reconciled roster revision {result.roster_revision}: "
        f"{len(result.activated)} activated, {len(result.retired)} retired, "
        f"{len(result.respawned)} respawned, {len(result.failed)} failed; "
        f"edges +{len(result.edges_added)} -{len(result.edges_removed)}"
    )
    for label, names in (
        ("activated", result.activated),
        ("retired", result.retired),
        ("respawned", result.respawned),
    ):
        if names:
            run.print(f"  {label}: {', '.join(names)}")
    for f in result.failed:
        run.print(f"  failed: {f.identity}: {f.reason}: {f.message}")
    if result.roster_problem is not None:
        for line in result.roster_problem.lines():
            run.print(f"  roster rejected (revision {result.roster_revision} stays): {line}")
    return code


def add_reconcile(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _command(
        sub,
        "reconcile",
        reconcile,
        "run one reconcile cycle now (progress on stderr; exit 8 if identities failed, "
        "3 if the roster's latest version was rejected)",
        timeout=RECONCILE_TIMEOUT,
    )


# -- lifecycle ------------------------------------------------------------------------------------


def _lifecycle(name: str) -> Handler:
    async def handler(run: Run) -> int:
        status = await getattr(run.mk, name)(run.args.identity)
        if run.json:
            print_json(status, run.out)
        else:
            run.print(status_line(status))
        return exit_codes.OK

    return handler


LIFECYCLE = {
    "reset": "start a new continuity generation (drops the session and its snapshots)",
    "retire": "retire an identity (closes its session, releases its lease)",
    "suspend": "suspend an identity (checkpoint, close, keep out of activation)",
    "resume": "resume a suspended identity from its last checkpoint",
}


def add_lifecycle(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, help in LIFECYCLE.items():
        _command(sub, name, _lifecycle(name), help).add_argument(
            "identity", metavar="IDENTITY", help=f"the identity to {name}"
        )


# -- leases, topology ---------------------------------------------------------------------------


async def leases(run: Run) -> int:
    try:
        held = [lease async for lease in run.mk.providers.lease.leases()]
    except RemoteError as exc:
        if exc.code != "UNIMPLEMENTED" or run.args.lease_service_addr:
            raise
        # The address serves an orchestrator alone (`mobkit up --split`, `serve orchestrator`).
        run.note(
            f"mobkit leases: {run.args.resolved_addr} serves no LeaseService: give the "
            "lease service's address with --lease-addr HOST:PORT (or MOBKIT_LEASE_ADDR; "
            "`mobkit up --split` prints it as `lease service`)"
        )
        return exit_codes.USAGE
    if run.json:
        print_json(held, run.out)
        return exit_codes.OK
    rows = [[x.identity, x.holder, x.fencing_token, seconds(x.ttl_remaining)] for x in held]
    run.print(table(("IDENTITY", "HOLDER", "TOKEN", "TTL"), rows))
    run.print(f"{len(held)} leases")
    return exit_codes.OK


def add_leases(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _command(sub, "leases", leases, "held leases (LeaseService.ListLeases)")
    p.add_argument(
        "--lease-addr",
        dest="lease_service_addr",
        metavar="HOST:PORT",
        default=os.environ.get("MOBKIT_LEASE_ADDR") or None,
        help="the lease service, when not served on --addr (as by `serve all` and `up`) "
        "[default: --addr; env MOBKIT_LEASE_ADDR]",
    )


async def topology(run: Run) -> int:
    edges = [e async for e in run.mk.topology(run.args.identity)]
    if run.json:
        print_json(edges, run.out)
        return exit_codes.OK
    run.print(table(("A", "B"), [[e.a, e.b] for e in edges]))
    run.print(f"{len(edges)} edges")
    return exit_codes.OK


def add_topology(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _command(sub, "topology", topology, "managed peer edges in force")
    p.add_argument(
        "--identity", metavar="IDENTITY", help="only edges touching this identity [default: all]"
    )


async def modules(run: Run) -> int:
    found = await run.mk.modules()
    if run.json:
        print_json(found, run.out)
        return exit_codes.OK
    rows = [
        [
            m.config.id,
            m.state.value,
            str(m.restart_count),
            str(m.pid or "-"),
            ",".join(m.tools) or "-",
            m.detail or "",
        ]
        for m in found
    ]
    run.print(table(("MODULE", "STATE", "RESTARTS", "PID", "TOOLS", "DETAIL"), rows))
    return exit_codes.OK


def add_modules(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _command(sub, "modules", modules, "modules (MCP tool servers): health, restarts, tools")


def add_all(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_status(sub)
    add_turns(sub)
    add_events(sub)
    add_reconcile(sub)
    add_lifecycle(sub)
    add_leases(sub)
    add_topology(sub)
    add_modules(sub)
