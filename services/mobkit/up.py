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
import json
import os
import signal
import sys
from pathlib import Path

from mobkit.example import CONFIG, ROSTER, example_path
from mobkit.server.config import Settings, load_settings, with_port
from mobkit.server.logs import configure_logging

SPLIT_SERVICES = ("lease", "continuity", "roster", "topology", "customizer", "runtime")


def local_etcd_endpoint(data_dir: str | Path) -> str | None:
    """The endpoint of the etcd ``mobkit up`` runs for ``data_dir``, if it has one."""
    ports_file = Path(data_dir) / "etcd" / "ports.json"
    try:
        return f"http://127.0.0.1:{int(json.loads(ports_file.read_text())['client'])}"
    except (OSError, ValueError, KeyError, TypeError):
        return None


async def _local_etcd(data_dir: Path) -> object:
    """A local etcd whose ports are remembered, so a restart finds the same member."""
    from mobkit.etcd.process import EtcdProcess, free_ports

    base = data_dir / "etcd"
    base.mkdir(parents=True, exist_ok=True)
    ports_file = base / "ports.json"
    if ports_file.exists():
        ports = json.loads(ports_file.read_text())
        client, peer = int(ports["client"]), int(ports["peer"])
    else:
        client, peer = free_ports(2)
        ports_file.write_text(json.dumps({"client": client, "peer": peer}))
    etcd = EtcdProcess(base, client_port=client, peer_port=peer, heartbeat_ms=100, election_ms=1000)
    await etcd.start_async()
    return etcd


def _banner(settings: Settings, address: str, etcd_endpoint: str, split: bool) -> str:
    return "\n".join(
        [
            "",
            "MobKit is up.",
            f"  orchestrator + providers : {address}{'  (orchestrator; providers in their own processes)' if split else ''}",
            f"  etcd                     : {etcd_endpoint}",
            f"  roster                   : {settings.roster}",
            f"  data                     : {Path(settings.data_dir).resolve()}",
            "",
            "Try, in another terminal:",
            f"  .venv/bin/mobkit status --addr {address}",
            f"  .venv/bin/mobkit send coordinator 'remember the milk' --addr {address}",
            f"  .venv/bin/mobkit events --follow --addr {address}",
            "Ctrl-C stops; `./dev up` again resumes the same sessions.",
            "",
        ]
    )


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


def _prepare(settings: Settings) -> Path:
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.roster:
        settings.roster = str(example_path(ROSTER))
    if settings.runtime_instance is None:
        settings.runtime_instance = "local"  # stable, so a restart finds its own leases
    return data_dir


async def run_up(args: argparse.Namespace) -> int:
    from mobkit.server.app import serve_until_signalled, stop_on_signals
    from mobkit.server.host import start_services
    from mobkit.server.memory import freeze_startup_objects

    if not args.config and not os.environ.get("MOBKIT_CONFIG") and not args.roster:
        args.config = str(example_path(CONFIG))  # the example team's topology and rules
    settings = load_settings(args)
    configure_logging(settings.log_level, settings.log_format)
    stop = stop_on_signals()
    data_dir = _prepare(settings)
    etcd = None
    if not settings.etcd_endpoints:
        etcd = await _local_etcd(data_dir)
        settings.etcd_endpoints = [etcd.endpoint]  # type: ignore[attr-defined]
    procs: list[asyncio.subprocess.Process] = []
    relays: list[asyncio.Task[None]] = []
    try:
        if args.split:
            procs, relays, addrs = await _spawn_split(settings)
            for key, addr in addrs.items():
                setattr(settings, f"{key}_addr", addr)
            keys = ["orchestrator"]
        else:
            keys = ["all"]
        server, resources = await start_services(keys, settings)
        freeze_startup_objects()
        address = with_port(settings.listen, server.port)
        print(_banner(settings, address, settings.etcd_endpoints[0], args.split), flush=True)
        print(f"listening on {address}", file=sys.stderr, flush=True)
        try:
            await serve_until_signalled([server], settings.grace, stop)
        finally:
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
        if etcd is not None:
            await etcd.stop_async()  # type: ignore[attr-defined]
    return 0
