"""``mobkit etcd``: the operator's etcd maintenance, talking to etcd itself.

* ``status``   each member's database size, size in use, leader, revision, alarms
* ``compact``  drop history up to a revision (default: the current one)
* ``defrag``   give each member's freed pages back to the file system, one at a time
* ``disarm``   clear the NOSPACE alarm (after space was freed)
* ``recover``  all of it: compact, defragment every member, disarm NOSPACE, status

etcd is reached with the services' own options (``--etcd-endpoints``, ``--etcd-ca``,
``--etcd-cert``, ``--etcd-key``, ``--etcd-username``, ``--etcd-password``, also as
``MOBKIT_*`` variables or from ``--config``). Name every member in
``--etcd-endpoints``: defragmentation is per member. Exit codes as the client
commands': 0 ok, 6 etcd unreachable, 7 credentials refused, 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

from mobkit.cli import exit_codes
from mobkit.cli.output import table
from mobkit.etcd.client import EtcdClient, EtcdTLS
from mobkit.etcd.errors import EtcdAuthError, EtcdCompacted, EtcdError, EtcdUnavailable
from mobkit.etcd.status_watch import nospace_alarms
from mobkit.server.config import Settings, add_arguments, load_settings

ETCD_OPTIONS = (
    "etcd_endpoints",
    "etcd_prefix",
    "etcd_ca",
    "etcd_cert",
    "etcd_key",
    "etcd_username",
    "etcd_password",
    "data_dir",  # without endpoints: the etcd `mobkit up` runs for it
)
DEFRAG_TIMEOUT = 300.0


@dataclass(frozen=True)
class MemberStatus:
    endpoint: str
    member_id: str
    version: str
    db_size: int
    db_size_in_use: int
    leader: bool
    revision: int
    alarms: tuple[str, ...]


def _mib(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB"


class Etcd:
    """One client per member endpoint, from the services' settings."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        if not settings.etcd_endpoints:
            from mobkit.etcd.local import local_etcd_endpoint

            # Without endpoints: the etcd that `mobkit up` runs for this data dir.
            local = local_etcd_endpoint(settings.data_dir)
            if local is None:
                raise ValueError(
                    "no etcd endpoints: give --etcd-endpoints (or MOBKIT_ETCD_ENDPOINTS), "
                    f"or run it where `mobkit up` keeps {settings.data_dir}/etcd"
                )
            settings.etcd_endpoints = [local]
        self.settings = settings
        self.timeout = timeout

    async def client(self, endpoints: list[str]) -> EtcdClient:
        s = self.settings
        tls = (
            EtcdTLS(ca_file=s.etcd_ca, cert_file=s.etcd_cert, key_file=s.etcd_key)
            if s.etcd_ca or s.etcd_cert
            else None
        )
        return await EtcdClient.connect(
            endpoints,
            tls=tls,
            username=s.etcd_username,
            password=s.etcd_password,
            timeout=self.timeout,
            wait_for_ready=False,
        )

    async def each(self, step: Callable[[str, EtcdClient], Awaitable[object]]) -> None:
        """``step`` on every member endpoint, one after the other."""
        for endpoint in self.settings.etcd_endpoints:
            async with await self.client([endpoint]) as client:
                await step(endpoint, client)

    async def statuses(self) -> list[MemberStatus]:
        out: list[MemberStatus] = []

        async def one(endpoint: str, client: EtcdClient) -> None:
            st = await client.status()
            out.append(
                MemberStatus(
                    endpoint=endpoint,
                    member_id=f"{st.header.member_id:x}",
                    version=st.version,
                    db_size=st.dbSize,
                    db_size_in_use=st.dbSizeInUse,
                    leader=st.leader == st.header.member_id,
                    revision=st.header.revision,
                    alarms=tuple(e.strip() for e in st.errors),
                )
            )

        await self.each(one)
        return out

    async def compact(self, revision: int | None) -> int:
        async with await self.client(self.settings.etcd_endpoints) as client:
            if revision is None:
                reply = await client.range(self.settings.etcd_prefix, count_only=True)
                revision = reply.header.revision
            # Already compacted at or beyond it: nothing older is left either way.
            with contextlib.suppress(EtcdCompacted):
                await client.compact(revision, physical=True)
            return revision

    async def defrag(self, say: Callable[[str], None]) -> None:
        async def one(endpoint: str, client: EtcdClient) -> None:
            before = await client.status()
            await client.defragment(timeout=max(self.timeout, DEFRAG_TIMEOUT))
            after = await client.status()
            say(f"defragmented {endpoint}: {_mib(before.dbSize)} -> {_mib(after.dbSize)}")

        await self.each(one)

    async def disarm(self) -> list[str]:
        async with await self.client(self.settings.etcd_endpoints) as client:
            return [f"{a.memberID:x}" for a in await client.disarm()]


def _status_table(statuses: list[MemberStatus]) -> str:
    rows = [
        [
            s.endpoint,
            s.member_id,
            s.version,
            _mib(s.db_size),
            _mib(s.db_size_in_use),
            "yes" if s.leader else "no",
            s.revision,
            ", ".join(s.alarms) or "-",
        ]
        for s in statuses
    ]
    headers = ("ENDPOINT", "MEMBER", "VERSION", "DB SIZE", "IN USE", "LEADER", "REVISION", "ALARMS")
    return table(headers, rows)


def _out_of_space_line(statuses: list[MemberStatus]) -> str | None:
    if any(nospace_alarms(list(s.alarms)) for s in statuses):
        return (
            "etcd is out of space (NOSPACE alarm): writes fail with BACKEND_FULL; "
            "run `mobkit etcd recover` to compact, defragment and disarm"
        )
    return None


async def _run(args: argparse.Namespace) -> int:
    etcd = Etcd(load_settings(args), args.timeout)

    def say(text: str) -> None:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)

    async def show() -> None:
        statuses = await etcd.statuses()
        if args.json:
            print(json.dumps([asdict(s) for s in statuses], sort_keys=True), flush=True)
        else:
            print(_status_table(statuses), flush=True)
        if (line := _out_of_space_line(statuses)) is not None:
            print(line, file=sys.stderr, flush=True)

    action = args.etcd_command
    if action == "status":
        await show()
        return exit_codes.OK
    if action in ("compact", "recover"):
        revision = await etcd.compact(getattr(args, "revision", None))
        say(f"compacted etcd at revision {revision}")
    if action in ("defrag", "recover"):
        await etcd.defrag(say)
    if action in ("disarm", "recover"):
        members = await etcd.disarm()
        say(f"disarmed NOSPACE on {', '.join(members)}" if members else "no NOSPACE alarm raised")
    if action == "recover":
        await show()
    return exit_codes.OK


def run(args: argparse.Namespace) -> int:
    name = f"etcd {args.etcd_command}"
    try:
        return asyncio.run(_run(args))
    except EtcdError as exc:
        if isinstance(exc, EtcdUnavailable):
            reason, code = "UNAVAILABLE", exit_codes.UNAVAILABLE
        elif isinstance(exc, EtcdAuthError):
            reason, code = "UNAUTHENTICATED", exit_codes.DENIED
        else:
            reason, code = exc.code or "ERROR", exit_codes.ERROR
        message = " ".join(str(exc).split())
        if getattr(args, "json", False):
            error = {"command": name, "reason": reason, "message": message, "exit_code": code}
            print(json.dumps({"error": error}, sort_keys=True), file=sys.stderr)
        else:
            print(f"mobkit {name}: {reason}: {message}", file=sys.stderr)
        return code


HELP = {
    "status": "each member's database size, size in use, leader, revision and alarms",
    "compact": "drop etcd's history up to a revision (default: the current revision)",
    "defrag": "defragment every member, one at a time (frees the space compaction released)",
    "disarm": "clear etcd's NOSPACE alarm once space is free",
    "recover": "etcd out of space: compact, defragment every member, disarm NOSPACE",
}


def add_etcd(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser(
        "etcd", help="etcd maintenance: status, compact, defrag, disarm, recover"
    )
    actions = group.add_subparsers(dest="etcd_command", required=True)
    for action, help in HELP.items():
        p = actions.add_parser(action, help=help, description=help)
        add_arguments(p, ETCD_OPTIONS)  # as the services take them, env and --config too
        p.add_argument("--json", action="store_true", help="JSON output for scripts [default: off]")
        p.add_argument(
            "--timeout",
            type=float,
            default=10.0,
            metavar="SECONDS",
            help=f"deadline of each etcd call [default: 10 s; a defragmentation gets at "
            f"least {DEFRAG_TIMEOUT:g} s]",
        )
        if action == "compact":
            p.add_argument(
                "--revision",
                type=int,
                metavar="N",
                help="compact up to this revision [default: the current revision]",
            )
        p.set_defaults(kind="local", local_handler=run, command_name=f"etcd {action}")
