"""``mobkit serve`` and ``mobkit up``: the commands that run the suite."""

from __future__ import annotations

import argparse
import sys

from mobkit.server.config import add_arguments, load_settings, with_port
from mobkit.server.logs import configure_logging


def add_server_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run one service (or all) in this process")
    serve.add_argument(
        "service",
        help="lease, continuity, roster, topology, customizer, runtime, orchestrator or all",
    )
    add_arguments(serve)
    serve.set_defaults(kind="server", server_handler=_serve)

    up = sub.add_parser("up", help="the whole suite on its embedded default (local etcd included)")
    up.add_argument("--split", action="store_true", help="one process per service")
    add_arguments(up)
    up.set_defaults(kind="server", server_handler=_up)


async def _serve(args: argparse.Namespace) -> int:
    from mobkit.server.app import serve_until_signalled, stop_on_signals
    from mobkit.server.host import expand, start_services

    settings = load_settings(args)
    configure_logging(settings.log_level, settings.log_format)
    keys = expand([args.service])
    stop = stop_on_signals()
    server, resources = await start_services(keys, settings)
    print(f"listening on {with_port(settings.listen, server.port)}", file=sys.stderr, flush=True)
    try:
        await serve_until_signalled([server], settings.grace, stop)
    finally:
        await resources.close()
    return 0


async def _up(args: argparse.Namespace) -> int:
    from mobkit.up import run_up

    return await run_up(args)
