"""The built wheel, installed into a fresh venv, runs ``mobkit up`` from any directory:
the example roster and config come from the package, not from a checkout."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_support import ROOT

from mobkit.roster.document import parse_roster_toml

BUILD_TIMEOUT = 300.0
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
LISTENING = re.compile(r"listening on (\S+)")

pytestmark = pytest.mark.timeout(900)


def _run(*cmd: str | Path, timeout: float, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=_clean_env(),
        check=False,
    )
    assert done.returncode == 0, (
        f"{' '.join(map(str, cmd))}: rc={done.returncode}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def _clean_env() -> dict[str, str]:
    """No MOBKIT_* settings, and nothing that would put the checkout on sys.path."""
    drop = ("MOBKIT_", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel built from this tree (and its dependencies)."""
    base = tmp_path_factory.mktemp("wheel")
    wheels = base / "wheels"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "-q",
        "-w",
        wheels,
        ROOT,
        timeout=BUILD_TIMEOUT,
    )
    (wheel,) = wheels.glob("mobkit-*.whl")
    env = base / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", env, timeout=BUILD_TIMEOUT)
    python = env / "bin" / "python"
    # This interpreter's pip installs into the new venv (--python); no bytecode, to be quick.
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "-q",
        "--no-compile",
        wheel,
        timeout=BUILD_TIMEOUT,
    )
    return env


def _pump(
    stream: Iterator[str], lines: list[str], found: threading.Event, address: list[str]
) -> None:
    for line in stream:  # drains the pipe for the child's whole life
        lines.append(line)
        match = LISTENING.search(line)
        if match and not found.is_set():
            address.append(match.group(1))
            found.set()


def test_installed_wheel_runs_up_with_its_packaged_example(venv: Path, tmp_path: Path) -> None:
    mobkit = venv / "bin" / "mobkit"
    elsewhere = tmp_path / "elsewhere"  # no examples/ here, nor anywhere up the tree
    elsewhere.mkdir()
    located = _run(
        venv / "bin" / "python",
        "-c",
        "import mobkit.up; print(mobkit.up.__file__)",
        cwd=elsewhere,
        timeout=60,
    )
    assert Path(located.strip()).is_relative_to(venv), "mobkit imported from outside the venv"
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert _run(mobkit, "--version", cwd=elsewhere, timeout=60).strip() == f"mobkit {version}"

    data = tmp_path / "data"
    proc = subprocess.Popen(
        [
            str(mobkit),
            "up",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(data),
            "--log-format",
            "text",
        ],
        cwd=elsewhere,
        env=_clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    found, address = threading.Event(), []
    assert proc.stderr is not None
    threading.Thread(target=_pump, args=(proc.stderr, lines, found, address), daemon=True).start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not found.wait(0.1):
            assert proc.poll() is None, (
                f"mobkit up exited rc={proc.returncode}:\n{''.join(lines)[-3000:]}"
            )
            assert time.monotonic() < deadline, f"mobkit up never served:\n{''.join(lines)[-3000:]}"
        status = _run(mobkit, "status", "--addr", address[0], "--json", cwd=elsewhere, timeout=60)
        example = parse_roster_toml((ROOT / "examples" / "roster.toml").read_text())
        assert {s["identity"] for s in json.loads(status)} == {s.identity for s in example.specs}
        assert any("mobkit/example/roster.toml" in line for line in lines), (
            "roster not the packaged one"
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(STOP_TIMEOUT) == 0, "".join(lines)[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # `up` stopped the etcd it started: its remembered client port is free again.
    client_port = json.loads((data / "etcd" / "ports.json").read_text())["client"]
    _run(
        sys.executable,
        "-c",
        f"import socket; socket.create_server(('127.0.0.1', {client_port})).close()",
        timeout=30,
    )
