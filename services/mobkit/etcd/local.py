"""The etcd ``mobkit up`` runs for a data dir.

Its data lives in ``<data-dir>/etcd/`` and its two ports are remembered in
``<data-dir>/etcd/ports.json``, so a restart finds the same member at the same
address, and ``mobkit etcd`` finds it without being told.
"""

from __future__ import annotations

import json
from pathlib import Path

from mobkit.etcd.process import HOST, EtcdProcess, free_ports
from mobkit.server.addresses import bind_problem


def ports_file(data_dir: str | Path) -> Path:
    return Path(data_dir) / "etcd" / "ports.json"


def remembered_ports(data_dir: str | Path) -> tuple[int, int] | None:
    """(client, peer) as remembered for ``data_dir``, if they are."""
    try:
        ports = json.loads(ports_file(data_dir).read_text())
        return int(ports["client"]), int(ports["peer"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def local_etcd_endpoint(data_dir: str | Path) -> str | None:
    """The endpoint of the etcd ``mobkit up`` runs for ``data_dir``, if it has one."""
    ports = remembered_ports(data_dir)
    return f"http://{HOST}:{ports[0]}" if ports is not None else None


def _check_free(data_dir: Path, ports: tuple[int, int]) -> None:
    """A remembered port that another program took is one line with what to do."""
    for role, port in zip(("client", "peer"), ports, strict=True):
        problem = bind_problem(HOST, port)
        if problem is not None:
            file = ports_file(data_dir)
            raise OSError(
                f"etcd's {role} port {HOST}:{port}, remembered in {file}, cannot be used "
                f"({problem}): stop the program that holds it, or delete {file} so that "
                "mobkit up picks free ports (etcd's data is kept)"
            )


async def start_local_etcd(data_dir: Path) -> EtcdProcess:
    """Start ``data_dir``'s etcd on its remembered ports (new ones the first time) and
    wait until it serves. Raises ``OSError`` if a remembered port is taken, and
    :class:`~mobkit.etcd.process.EtcdStartError` if etcd does not come up."""
    base = data_dir / "etcd"
    base.mkdir(parents=True, exist_ok=True)
    ports = remembered_ports(data_dir)
    if ports is None:
        client, peer = free_ports(2)
        ports_file(data_dir).write_text(json.dumps({"client": client, "peer": peer}))
    else:
        _check_free(data_dir, ports)
        client, peer = ports
    etcd = EtcdProcess(base, client_port=client, peer_port=peer, heartbeat_ms=100, election_ms=1000)
    await etcd.start_async()
    return etcd
