"""Start-up failures of ``mobkit up`` and ``mobkit serve``: each is one line on stderr
naming what and where, exit code 2, no traceback, and nothing started before it."""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import mobkit

from mobkit.core.errors import InvalidArgument
from mobkit.etcd.process import free_ports
from mobkit.server.addresses import check_etcd_url, host_port
from mobkit.server.datadir_lock import DataDirLock

pytestmark = pytest.mark.timeout(120)

USAGE = 2


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture
def squatter() -> Iterator[int]:
    """A port another program listens on (with SO_REUSEADDR, as servers do)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_address_rules() -> None:
    assert host_port("listen", "127.0.0.1:0", allow_any_port=True) == ("127.0.0.1", 0)
    assert host_port("listen", "[::1]:7700", allow_any_port=True) == ("::1", 7700)
    with pytest.raises(InvalidArgument, match="out of range"):
        host_port("lease_addr", "h:0", allow_any_port=False)
    for good in ("http://127.0.0.1:2379", "https://etcd-0.etcd:2379", "http://[::1]:2379/"):
        check_etcd_url(good)
    for bad in ("bogus", "127.0.0.1:2379", "ftp://h:1", "http://h:0", "http://h:1/x", "http://"):
        with pytest.raises(InvalidArgument):
            check_etcd_url(bad)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["up", "--etcd-endpoints", "bogus"],
            "mobkit up: invalid etcd_endpoints: 'bogus' is not an etcd URL "
            "(expected http://HOST:PORT or https://HOST:PORT)",
        ),
        (
            ["up", "--listen", "127.0.0.1:99999"],
            "mobkit up: invalid listen: port 99999 of '127.0.0.1:99999' is out of range (0-65535)",
        ),
        (
            ["serve", "lease", "--listen", "127.0.0.1:0", "--etcd-endpoints", "http://h:99999"],
            "mobkit serve: invalid etcd_endpoints: 'http://h:99999' has an invalid port "
            "(1-65535; expected http://HOST:PORT or https://HOST:PORT)",
        ),
        (
            ["serve", "orchestrator", "--listen", "127.0.0.1:0", "--lease-addr", "lease"],
            "mobkit serve: invalid lease_addr: expected HOST:PORT, got 'lease'",
        ),
    ],
)
def test_a_malformed_address_is_refused_before_anything_starts(
    tmp_path: Path, args: list[str], line: str
) -> None:
    data = tmp_path / "data"
    run = mobkit(*args, "--data-dir", str(data))
    assert (run.returncode, one_line(run.stderr)) == (USAGE, line)
    assert not data.exists()


def test_a_port_in_use_is_named(tmp_path: Path, squatter: int) -> None:
    data = tmp_path / "data"
    run = mobkit("up", "--data-dir", str(data), "--listen", f"127.0.0.1:{squatter}")
    line = f"mobkit up: cannot listen on 127.0.0.1:{squatter} (--listen): address already in use"
    assert (run.returncode, one_line(run.stderr)) == (USAGE, line)
    assert not (data / "etcd").exists()  # refused before its etcd was started
    metrics = f"127.0.0.1:{squatter}"
    run = mobkit("serve", "topology", "--listen", "127.0.0.1:0", "--metrics-listen", metrics)
    line = (
        f"mobkit serve: cannot listen on 127.0.0.1:{squatter} (--metrics-listen): "
        "address already in use"
    )
    assert (run.returncode, one_line(run.stderr)) == (USAGE, line)


def test_an_unreachable_etcd_is_named_before_the_roster_or_modules_load(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    data = tmp_path / "data"
    pattern = re.compile(rf"mobkit (up|serve): etcd unreachable at {re.escape(dead)} \(.+\)")
    run = mobkit("up", "--data-dir", str(data), "--listen", "127.0.0.1:0", "--etcd-endpoints", dead)
    assert run.returncode == USAGE and pattern.fullmatch(one_line(run.stderr)), run.stderr
    assert not (data / "modules").exists()  # the example's clock module never started
    run = mobkit("serve", "lease", "--listen", "127.0.0.1:0", "--etcd-endpoints", dead)
    assert run.returncode == USAGE and pattern.fullmatch(one_line(run.stderr)), run.stderr


def test_a_remembered_etcd_port_taken_by_another_program_says_what_to_do(
    tmp_path: Path, squatter: int
) -> None:
    data = tmp_path / "data"
    ports = data / "etcd" / "ports.json"
    ports.parent.mkdir(parents=True)
    ports.write_text(json.dumps({"client": squatter, "peer": free_ports(1)[0]}))
    run = mobkit("up", "--data-dir", str(data), "--listen", "127.0.0.1:0")
    line = (
        f"mobkit up: etcd's client port 127.0.0.1:{squatter}, remembered in {ports}, cannot be "
        f"used (address already in use): stop the program that holds it, or delete {ports} so "
        "that mobkit up picks free ports (etcd's data is kept)"
    )
    assert (run.returncode, one_line(run.stderr)) == (USAGE, line)
    assert not (data / "etcd" / "data").exists()


def test_a_second_up_on_a_locked_data_dir_names_the_first(tmp_path: Path) -> None:
    data = tmp_path / "data"
    lock = DataDirLock.acquire(data, "127.0.0.1:7777")  # as a first `up` holds it
    try:
        run = mobkit("up", "--data-dir", str(data), "--listen", "127.0.0.1:0")
    finally:
        lock.release()
    line = (
        f"mobkit up: data dir {data.resolve()} is in use by mobkit up (pid {os.getpid()}, "
        "serving 127.0.0.1:7777): stop it first, or give another --data-dir"
    )
    assert (run.returncode, one_line(run.stderr)) == (USAGE, line)
    assert not (data / "etcd").exists()
    # Released (or its holder dead): the next one takes it.
    DataDirLock.acquire(data, "127.0.0.1:7778").release()
