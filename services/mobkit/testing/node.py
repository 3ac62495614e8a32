"""Run a Node.js MobKit service (``clients/*-node/server.js``) for tests."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path


def npm_install(package: Path) -> None:
    """``npm install`` in ``package`` unless its packages are there (skips without node)."""
    import pytest

    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(f"node/npm not installed: {package.name} cannot run here")
    if (package / "node_modules" / "@grpc" / "grpc-js").is_dir():
        return  # cached
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefer-offline"],
        cwd=package,
        check=True,
        timeout=240,
        stdout=subprocess.DEVNULL,
    )


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
