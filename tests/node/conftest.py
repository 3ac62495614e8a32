"""The Node client's dependencies, installed once for every Node test module."""

from __future__ import annotations

from pathlib import Path

import pytest

from mobkit.testing.node import npm_install

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "node"


@pytest.fixture(scope="session")
def installed() -> Path:
    npm_install(CLIENT, refresh=True)  # the lock file may have changed: always install
    return CLIENT
