"""Fixture ``h``: the continuity contract harness, parametrised over every backend
(``memory``, ``sqlite``, ``etcd`` and each behind a real gRPC server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from continuity_support import BACKENDS, Harness, make_harness


@pytest_asyncio.fixture(params=BACKENDS)
async def h(
    request: pytest.FixtureRequest, tmp_path: Path, etcd_prefix: str
) -> AsyncIterator[Harness]:
    name: str = request.param
    endpoint = None
    if name.endswith("etcd"):
        endpoint = request.getfixturevalue("etcd_session").endpoint
    harness = await make_harness(name, tmp_path, endpoint, etcd_prefix)
    try:
        yield harness
    finally:
        for cleanup in reversed(harness.cleanups):
            await cleanup()
