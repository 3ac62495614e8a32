"""Fixture ``suite``: lease, continuity (etcd), roster, topology and customizer served on
port 0 over the session's real etcd, with the compat adapters registered on the Meerkat
SDK's ``CallbackDispatcher``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from compat_support import ROSTER, Suite, serve_suite

from mobkit.etcd.process import EtcdProcess


@pytest_asyncio.fixture
async def suite(
    request: pytest.FixtureRequest, etcd_session: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> AsyncIterator[Suite]:
    """Parametrize it indirectly with a roster's text to serve another roster."""
    roster = tmp_path / "roster.toml"
    roster.write_text(getattr(request, "param", ROSTER))
    async with serve_suite(etcd_session.endpoint, etcd_prefix, roster) as suite:
        yield suite
