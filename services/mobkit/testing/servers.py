"""Start catalog services in-process on port 0 for tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc

from mobkit.server.app import MobKitServer
from mobkit.server.config import Settings, load_settings
from mobkit.server.host import start_services


@asynccontextmanager
async def running_services(
    keys: Sequence[str], **overrides: Any
) -> AsyncIterator[tuple[MobKitServer, grpc.aio.Channel, Settings]]:
    """Serve ``keys`` on 127.0.0.1:0 with ``overrides`` applied to the settings."""
    settings = load_settings(env={}, overrides={"listen": "127.0.0.1:0", **overrides})
    server, resources = await start_services(keys, settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield server, channel, settings
    finally:
        await channel.close()
        await server.stop(0)
        await resources.close()
