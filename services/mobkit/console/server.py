"""Serving the console: from settings to a running uvicorn server.

``mobkit serve console`` runs it alone (``--listen`` is its HTTP address,
``--orchestrator-addr`` the orchestrator it reads); ``mobkit up`` runs it beside the
suite on ``--console-listen``. Both take the suite's TLS and token settings: the
console serves HTTPS with ``--tls-cert``/``--tls-key``, verifies the orchestrator
as any MobKit caller does, and checks logins against ``--auth-tokens-file``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from mobkit.client import ClientOptions
from mobkit.console.app import build_app
from mobkit.console.auth import ConsoleAuth
from mobkit.console.context import Console
from mobkit.console.reader import ClientPool
from mobkit.core.errors import InvalidArgument
from mobkit.security.auth import TokenRegistry, read_token_file
from mobkit.security.tls import client_tls_from
from mobkit.server.addresses import OFF, host_port
from mobkit.server.config import Settings, default_of
from mobkit.server.http_listener import http_listener

log = logging.getLogger("mobkit.console")


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the process that hosts the console (``mobkit
    serve console``, ``mobkit up``) owns SIGTERM and SIGINT and stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def console_for(settings: Settings, orchestrator: str) -> Console:
    call_token = read_token_file(settings.call_token_file) if settings.call_token_file else None
    options = ClientOptions(address=orchestrator, tls=client_tls_from(settings), token=call_token)
    registry = TokenRegistry.load(settings.auth_tokens_file) if settings.auth_tokens_file else None
    return Console(
        ClientPool(options),
        ConsoleAuth(registry, call_token),
        secure_cookie=settings.tls_cert is not None,
    )


@dataclass
class RunningConsole:
    server: _Server
    task: asyncio.Task[None]
    url: str
    address: str
    """HOST:PORT it is bound to."""

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 10)


async def start_console(settings: Settings, listen: str, orchestrator: str) -> RunningConsole:
    """Bind ``listen`` (port 0: a free one) and serve the console on this event loop."""
    host, port = host_port("console_listen", listen, allow_any_port=True)
    sock = http_listener(host, port)
    config = uvicorn.Config(
        build_app(console_for(settings, orchestrator)),
        log_config=None,  # MobKit's logging (JSON lines) stays in charge
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
    )
    server = _Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # raises the failure
            raise OSError(f"console on {listen} stopped while starting")
        await asyncio.sleep(0.02)
    bound = sock.getsockname()[1]
    scheme = "https" if settings.tls_cert else "http"
    shown = f"[{host}]" if ":" in host else host
    return RunningConsole(server, task, f"{scheme}://{shown}:{bound}/", f"{shown}:{bound}")


async def serve_console(settings: Settings) -> int:
    """``mobkit serve console``: the console alone, until a signal, on ``--listen`` (if
    given, else ``--console-listen``)."""
    import sys

    from mobkit.client import DEFAULT_ADDRESS
    from mobkit.server.app import stop_on_signals

    stop = stop_on_signals()
    orchestrator = settings.orchestrator_addr or DEFAULT_ADDRESS
    # --listen when given; left at its default (the orchestrator's 7700), the console's.
    listen = settings.console_listen if settings.listen == default_of("listen") else settings.listen
    if listen == OFF:
        raise InvalidArgument("console_listen", "mobkit serve console needs an address, not off")
    running = await start_console(settings, listen, orchestrator)
    log.info("console serving", extra={"url": running.url, "orchestrator": orchestrator})
    print(f"console at {running.url}", file=sys.stderr, flush=True)
    print(f"listening on {running.address}", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await running.stop()
    return 0


def dial_address(listen: str, port: int) -> str:
    """Where this host reaches a server bound to ``listen`` (a wildcard: loopback)."""
    host, _ = host_port("listen", listen, allow_any_port=True)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
