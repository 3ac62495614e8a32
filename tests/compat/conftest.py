"""Fixture ``suite``: lease, continuity (etcd), roster, topology and customizer served on
port 0 over the session's real etcd, with the compat adapters registered on the Meerkat
SDK's ``CallbackDispatcher``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest_asyncio
from compat_support import ROSTER, SECTIONS, SERVICES, WAIT, Suite, dispatcher_for

from mobkit.compat.meerkat import MeerkatProviders
from mobkit.etcd.process import EtcdProcess
from mobkit.server.config import Settings
from mobkit.server.host import start_services


@pytest_asyncio.fixture
async def suite(
    etcd_session: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> AsyncIterator[Suite]:
    roster = tmp_path / "roster.toml"
    roster.write_text(ROSTER)
    settings = Settings(
        listen="127.0.0.1:0",
        etcd_endpoints=[etcd_session.endpoint],
        etcd_prefix=etcd_prefix,
        continuity_backend="etcd",
        roster=str(roster),
        sections=SECTIONS,
        log_level="WARNING",
    ).validate()
    server, resources = await start_services(SERVICES, settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        providers = MeerkatProviders.from_channel(channel, timeout=WAIT)
        yield Suite(channel, providers, dispatcher_for(providers))
    finally:
        await channel.close()
        await server.stop(0)
        await resources.close()
