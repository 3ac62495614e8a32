"""The ``mobkit`` console script.

Commands that run the suite (``serve``, ``up``), the operator's client commands
(``status``, ``send``, ``dispatch``, ``events``, ``reconcile``, ``reset``,
``retire``, ``suspend``, ``resume``, ``leases``, ``topology``), and local tools
(``roster validate``, ``dev-ca``, ``token create``), and etcd maintenance
(``etcd status|compact|defrag|disarm|recover``, :mod:`mobkit.cli.etcd`). Client commands fail with one
line ``mobkit <command>: <REASON>: <message>`` on stderr (a JSON object with
``--json``) and the exit codes of :mod:`mobkit.cli.exit_codes`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from importlib import metadata

from mobkit.cli import exit_codes
from mobkit.core.errors import MobKitError
from mobkit.server.startup import StartupError

EPILOG = """\
client commands reach the orchestrator at --addr (env MOBKIT_ADDR, default
127.0.0.1:7700, where `mobkit up` listens).

exit codes of client commands:
  0 ok      1 unexpected error   2 usage       3 invalid input
  4 not found (IDENTITY_NOT_FOUND, ...)        5 refused in the current state
  (NOT_ADDRESSABLE, NOT_ACTIVE, INVALID_TRANSITION, STALE_*, ...)
  6 unavailable (server unreachable, deadline, BACKEND_UNAVAILABLE, BACKEND_FULL)
  7 UNAUTHENTICATED / PERMISSION_DENIED        8 reconcile had failed identities
  130 interrupted
"""


def _parser() -> argparse.ArgumentParser:
    from mobkit.cli.commands import add_all
    from mobkit.cli.connect import add_client_options
    from mobkit.cli.etcd import add_etcd
    from mobkit.cli.flows import add_flows
    from mobkit.cli.roster import add_roster
    from mobkit.cli.server import add_server_commands
    from mobkit.security.commands import (
        add_dev_ca_arguments,
        add_token_arguments,
        run_dev_ca,
        run_token_create,
    )

    parser = argparse.ArgumentParser(
        prog="mobkit",
        description="Durable identity-addressed agents.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mobkit {_version()}")
    add_client_options(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", required=True)
    add_server_commands(sub)
    add_all(sub)
    add_flows(sub)
    add_roster(sub)
    add_etcd(sub)

    dev_ca = sub.add_parser("dev-ca", help="make a local CA and certificates for (m)TLS")
    add_dev_ca_arguments(dev_ca)
    dev_ca.set_defaults(kind="local", local_handler=run_dev_ca)
    token = sub.add_parser("token", help="bearer tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="issue a token and add its hash to a tokens file")
    add_token_arguments(create)
    create.set_defaults(kind="local", local_handler=run_token_create, command_name="token create")
    return parser


def _version() -> str:
    """The installed distribution's version (pyproject.toml's, for an editable install)."""
    try:
        return metadata.version("mobkit")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


async def _run_client(args: argparse.Namespace) -> int:
    from mobkit.cli.commands import Run
    from mobkit.cli.connect import client_options
    from mobkit.client import AsyncMobKit

    options = client_options(args, timeout=args.default_timeout)
    lease_addr = getattr(args, "lease_service_addr", None)
    providers = {"lease": lease_addr} if lease_addr else {}
    args.resolved_addr = options.address
    async with AsyncMobKit(options=options, provider_addresses=providers) as mk:
        code: int = await args.client_handler(Run(args, mk))
        return code


def _fail(name: str, exc: MobKitError, args: argparse.Namespace) -> int:
    from mobkit.cli.output import error_message, error_reason

    code = exit_codes.exit_code(exc)
    reason = error_reason(exc)
    message = error_message(exc, getattr(args, "resolved_addr", None))
    if getattr(args, "json", False):
        error = {
            "command": name,
            "reason": reason,
            "domain": exc.domain,
            "message": message,
            "metadata": exc.metadata,
            "exit_code": code,
        }
        print(json.dumps({"error": error}, sort_keys=True), file=sys.stderr)
    else:
        print(f"mobkit {name}: {reason}: {message}", file=sys.stderr)
    return code


def _quiet_stdout() -> None:
    """After a closed pipe (``mobkit events -f | head``), drop what is still buffered."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.kind == "server":
        try:
            code: int = asyncio.run(args.server_handler(args))
            return code
        except KeyboardInterrupt:
            return 130
        except (MobKitError, ValueError, OSError, StartupError) as exc:
            print(f"mobkit {args.command}: {exc}", file=sys.stderr)
            return exit_codes.USAGE
    name = getattr(args, "command_name", args.command)
    try:
        if args.kind == "client":
            return asyncio.run(_run_client(args))
        code = args.local_handler(args)
        return code
    except KeyboardInterrupt:
        return exit_codes.INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return exit_codes.OK
    except MobKitError as exc:
        return _fail(name, exc, args)
    except (ValueError, OSError) as exc:
        print(f"mobkit {name}: {exc}", file=sys.stderr)
        return exit_codes.USAGE


if __name__ == "__main__":
    raise SystemExit(main())
