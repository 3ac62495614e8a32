"""``mobkit serve`` and ``mobkit up``: the commands that run the suite."""

from __future__ import annotations

import argparse
import sys

from mobkit.server.catalog import CATALOG
from mobkit.server.config import add_arguments, load_settings, with_port
from mobkit.server.logs import configure_logging

SERVE_HELP = "run one service (or all) in this process"
UP_HELP = "the whole suite on its embedded default (local etcd included)"
REFERENCE = "Every option: docs/configuration.md. Flags win over MOBKIT_* variables, which win over --config."


def add_server_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help=SERVE_HELP, description=SERVE_HELP, epilog=REFERENCE)
    serve.add_argument(
        "service",
        metavar="SERVICE",
        help=f"{', '.join(CATALOG)}, all (every one of them), or console (the operator "
        "console over --orchestrator-addr, HTTP on --listen) (required)",
    )
    add_arguments(serve)
    serve.set_defaults(kind="server", server_handler=_serve)

    up = sub.add_parser("up", help=UP_HELP, description=UP_HELP, epilog=REFERENCE)
    up.add_argument(
        "--split",
        action="store_true",
        help="one `mobkit serve` process per provider on loopback, the orchestrator in "
        "this one [default: off, every service in this process]",
    )
    add_arguments(up)
    up.set_defaults(kind="server", server_handler=_up)


async def _serve(args: argparse.Namespace) -> int:
    from mobkit.server.app import serve_until_signalled, stop_on_signals
    from mobkit.server.host import expand, start_services
    from mobkit.server.memory import freeze_startup_objects, keep_large_buffers

    keep_large_buffers()
    settings = load_settings(args)
    configure_logging(settings.log_level, settings.log_format)
    if args.service == "console":
        from mobkit.console.server import serve_console

        return await serve_console(settings)
    keys = expand([args.service])
    stop = stop_on_signals()
    server, resources = await start_services(keys, settings)
    freeze_startup_objects()
    print(f"listening on {with_port(settings.listen, server.port)}", file=sys.stderr, flush=True)
    try:
        await serve_until_signalled([server], settings.grace, stop)
    finally:
        await resources.close()
    return 0


async def _up(args: argparse.Namespace) -> int:
    from mobkit.server.memory import keep_large_buffers
    from mobkit.up import run_up

    keep_large_buffers()
    return await run_up(args)
