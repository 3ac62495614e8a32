"""Run a Node.js MobKit service (``clients/*-node/server.js``) for tests."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path


def npm_install(package: Path, *, refresh: bool = False) -> None:
    """``npm install`` in ``package`` unless its packages are there, or always with
    ``refresh`` (skips without node). Test processes running in parallel take turns:
    two installs into one ``node_modules`` would corrupt it."""
    import pytest

    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(f"node/npm not installed: {package.name} cannot run here")
    with (package / ".npm-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not refresh and (package / "node_modules" / "@grpc" / "grpc-js").is_dir():
            return  # cached
        run = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefer-offline"],
            cwd=package,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    assert run.returncode == 0, f"npm install in {package} failed:\n{run.stdout}\n{run.stderr}"


@asynccontextmanager
async def node_server(package: Path) -> AsyncIterator[str]:
    """``node server.js --listen 127.0.0.1:0`` in ``package`` (installed first); yields
    the address it prints, and stops it (SIGTERM, then SIGKILL) on exit."""
    await asyncio.to_thread(npm_install, package)
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(package / "server.js"),
        "--listen",
        "127.0.0.1:0",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode().strip()
        assert line.startswith("listening on "), line
        yield line.removeprefix("listening on ")
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                with contextlib.suppress(ProcessLookupError):
                    await proc.wait()
