"""``mobkit up``: the whole suite on its embedded default.

Starts a local etcd (a managed child process, data under ``--data-dir``) unless
``--etcd-endpoints`` is given, then every service — in this process by
default, or one process per service with ``--split`` — loads the example
roster unless ``--roster`` is given, reconciles, and prints where to connect.
Ctrl-C stops everything; starting again resumes the same identities and
sessions from their checkpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mobkit.example import CONFIG, ROSTER, example_path
from mobkit.server.config import Settings, load_settings, with_port
from mobkit.server.logs import configure_logging
from mobkit.server.startup import StartupError

if TYPE_CHECKING:
    from mobkit.console.server import RunningConsole
    from mobkit.etcd.process import EtcdProcess
    from mobkit.server.datadir_lock import DataDirLock

SPLIT_SERVICES = ("lease", "continuity", "roster", "topology", "customizer", "runtime")


async def _local_etcd(data_dir: Path) -> EtcdProcess:
    """The data dir's etcd, started; a failure is one line (its log has the rest)."""
    from mobkit.etcd.local import start_local_etcd
    from mobkit.etcd.process import EtcdStartError

    try:
        return await start_local_etcd(data_dir)
    except EtcdStartError as exc:
        raise StartupError(f"etcd did not start: {str(exc).splitlines()[0]}") from None


def _banner(
    settings: Settings,
    address: str,
    etcd_endpoint: str,
    providers: dict[str, str],
    console: str | None = None,
) -> str:
    """Where everything listens; ``providers``: each provider's own address (``--split``)."""
    where = [f"  orchestrator + providers : {address}"]
    if providers:
        where = [f"  orchestrator             : {address}"] + [
            f"  {key + ' service':<25}: {addr}" for key, addr in providers.items()
        ]
    if console:
        where.append(f"  console                  : {console}")
    lease = f" --lease-addr {providers['lease']}" if "lease" in providers else ""
    cli = _cli_name()
    return "\n".join(
        [
            "",
            "MobKit is up.",
            *where,
            f"  etcd                     : {etcd_endpoint}",
            f"  roster                   : {settings.roster}",
            f"  data                     : {Path(settings.data_dir).resolve()}",
            "",
            "Try, in another terminal:",
            f"  {cli} status --addr {address}",
            f"  {cli} send coordinator 'remember the milk' --addr {address}",
            f"  {cli} events --follow --addr {address}",
            f"  {cli} leases --addr {address}{lease}",
            "Ctrl-C stops; `up` again on the same data dir resumes the same sessions.",
            "",
        ]
    )


def _cli_name() -> str:
    """How the operator reaches this CLI: the path it was started by (a checkout's
    ``.venv/bin/mobkit``), else ``mobkit`` on PATH (a wheel, the image)."""
    started = Path(sys.argv[0])
    return str(started) if started.name == "mobkit" and started.parent != Path() else "mobkit"


async def _relay(key: str, stream: asyncio.StreamReader, ready: asyncio.Future[None]) -> None:
    """Copy a child's stderr to ours (so its pipe never fills), noting when it listens."""
    async for line in stream:
        if not ready.done() and b"listening on" in line:
            ready.set_result(None)
        sys.stderr.write(f"[{key}] {line.decode(errors='replace')}")
    if not ready.done():
        ready.set_exception(OSError(f"mobkit serve {key} exited before listening"))


async def _spawn_split(
    settings: Settings,
) -> tuple[list[asyncio.subprocess.Process], list[asyncio.Task[None]], dict[str, str]]:
    """One `mobkit serve` per provider on loopback; returns them and their addresses."""
    from mobkit.etcd.process import free_ports

    procs: list[asyncio.subprocess.Process] = []
    relays: list[asyncio.Task[None]] = []
    readies: list[asyncio.Future[None]] = []
    addrs: dict[str, str] = {}
    env = {**os.environ, "MOBKIT_ETCD_ENDPOINTS": ",".join(settings.etcd_endpoints)}
    loop = asyncio.get_running_loop()
    for key, port in zip(SPLIT_SERVICES, free_ports(len(SPLIT_SERVICES)), strict=True):
        addr = f"127.0.0.1:{port}"
        cmd = [
            "-m",
            "mobkit.cli",
            "serve",
            key,
            "--listen",
            addr,
            "--data-dir",
            settings.data_dir,
            "--continuity-backend",
            settings.continuity_backend,
            "--etcd-prefix",
            settings.etcd_prefix,
        ]
        if settings.roster:
            cmd += ["--roster", settings.roster]
        if settings.config_path:
            cmd += ["--config", settings.config_path]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *cmd, env=env, stderr=asyncio.subprocess.PIPE
        )
        ready: asyncio.Future[None] = loop.create_future()
        assert proc.stderr is not None
        relays.append(asyncio.create_task(_relay(key, proc.stderr, ready)))
        procs.append(proc)
        readies.append(ready)
        addrs[key] = addr
    await asyncio.wait_for(asyncio.gather(*readies), 60)
    return procs, relays, addrs


async def _start_console(settings: Settings, port: int) -> RunningConsole | None:
    """The console beside the suite, unless ``--console-listen off``. A port that
    cannot be bound costs the console, not the suite: one warning line, and up goes on."""
    from mobkit.console.server import dial_address, start_console
    from mobkit.server.addresses import OFF

    if settings.console_listen == OFF:
        return None
    try:
        return await start_console(
            settings, settings.console_listen, dial_address(settings.listen, port)
        )
    except OSError as exc:
        print(
            f"mobkit up: warning: no console on {settings.console_listen} "
            f"(--console-listen): {exc.strerror or exc}",
            file=sys.stderr,
            flush=True,
        )
        return None


def _prepare(settings: Settings) -> Path:
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.roster:
        settings.roster = str(example_path(ROSTER))
    if settings.runtime_instance is None:
        settings.runtime_instance = "local"  # stable, so a restart finds its own leases
    return data_dir


async def run_up(args: argparse.Namespace) -> int:
    from mobkit.server.datadir_lock import DataDirLock

    if not args.config and not os.environ.get("MOBKIT_CONFIG") and not args.roster:
        args.config = str(example_path(CONFIG))  # the example team's topology and rules
    settings = load_settings(args)
    configure_logging(settings.log_level, settings.log_format)
    data_dir = _prepare(settings)
    # Before anything is loaded, bound or started: one suite per data dir.
    lock = DataDirLock.acquire(data_dir, settings.listen)
    try:
        return await _run(args, settings, data_dir, lock)
    finally:
        lock.release()


async def _run(
    args: argparse.Namespace, settings: Settings, data_dir: Path, lock: DataDirLock
) -> int:
    from mobkit.etcd.supervisor import EtcdSupervisor
    from mobkit.server.addresses import check_listen_free
    from mobkit.server.app import serve_until_signalled, stop_on_signals
    from mobkit.server.host import start_services
    from mobkit.server.memory import freeze_startup_objects
    from mobkit.server.resources import Resources

    stop = stop_on_signals()
    check_listen_free(settings)
    resources = Resources(settings)
    etcd = supervisor = None
    if not settings.etcd_endpoints:
        etcd = await _local_etcd(data_dir)
        settings.etcd_endpoints = [etcd.endpoint]
        # Its death and its return: the status watch looks at once (health, events).
        supervisor = EtcdSupervisor(etcd, on_change=resources.check_backends_now)
        supervisor.start()
    procs: list[asyncio.subprocess.Process] = []
    relays: list[asyncio.Task[None]] = []
    addrs: dict[str, str] = {}
    try:
        if args.split:
            procs, relays, addrs = await _spawn_split(settings)
            for key, addr in addrs.items():
                setattr(settings, f"{key}_addr", addr)
            keys = ["orchestrator"]
        else:
            keys = ["all"]
        server, resources = await start_services(keys, settings, resources)
        console = await _start_console(settings, server.port)
        freeze_startup_objects()
        address = with_port(settings.listen, server.port)
        lock.record(address)
        url = console.url if console else None
        print(_banner(settings, address, settings.etcd_endpoints[0], addrs, url), flush=True)
        if url:
            print(f"console at {url}", file=sys.stderr, flush=True)
        print(f"listening on {address}", file=sys.stderr, flush=True)
        try:
            await serve_until_signalled([server], settings.grace, stop)
        finally:
            if console is not None:
                await console.stop()
            await resources.close()
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
        for relay in relays:
            relay.cancel()
        if supervisor is not None:
            await supervisor.stop()  # first, or it would restart the etcd we stop
        if etcd is not None:
            await etcd.stop_async()
    return 0
