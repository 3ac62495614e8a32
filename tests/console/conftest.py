"""A real headless Chromium for the console's tests: Debian's ``chromium`` package
(installed here with apt-get when missing, as ``./dev test`` installs everything else),
driven by Playwright at /usr/bin/chromium. Playwright's own browser builds are never
downloaded."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "console"
"""Where each page's screenshot goes (ignored by git)."""
INSTALL_TIMEOUT = 900


def _install_chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.fail("the console tests need Debian's chromium: apt-get install -y chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Test workers running in parallel take turns: apt-get holds dpkg's lock.
    with (Path(tempfile.gettempdir()) / "mobkit-chromium-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            if shutil.which("chromium"):
                break  # another worker installed it meanwhile
            run = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
            )
            assert run.returncode == 0, f"{' '.join(cmd)} failed:\n{run.stdout[-2000:]}{run.stderr}"
    found = shutil.which("chromium")
    assert found, "apt-get installed chromium, but it is not on PATH"
    return found


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API holds this thread's event loop while it
    runs, which the asyncio tests of later modules need free."""
    from playwright.sync_api import sync_playwright

    executable = _install_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
