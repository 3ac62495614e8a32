"""The Node client's dependencies, installed once for every Node test module."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

NPM = shutil.which("npm")
CLIENT = Path(__file__).resolve().parents[2] / "clients" / "node"


@pytest.fixture(scope="session")
def installed() -> Path:
    assert NPM is not None
    run = subprocess.run(
        [NPM, "install", "--no-audit", "--no-fund", "--prefer-offline"],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, f"npm install failed:\n{run.stdout}\n{run.stderr}"
    return CLIENT
