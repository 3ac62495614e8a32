"""Fixtures: a dev CA, a tokens file, and the small mTLS + bearer-token suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from security_support import (
    RecordingLeases,
    RecordingOrchestrator,
    Suite,
    Tokens,
    registrations,
)

from mobkit.security.auth import issue_token
from mobkit.security.devca import DevCAFiles, make_dev_ca
from mobkit.server.app import ServerConfig, build_server
from mobkit.server.config import load_settings
from mobkit.server.resources import Resources
from mobkit.server.wiring import secure_and_observe


@pytest.fixture
def dev_ca(tmp_path: Path) -> DevCAFiles:
    return make_dev_ca(tmp_path / "ca")


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    path = tmp_path / "tokens.toml"
    read = issue_token(path, "dashboard", ["read"])
    write = issue_token(path, "orchestrator", ["write"])
    admin = issue_token(path, "operator", ["admin"])
    past = datetime.now(UTC) - timedelta(minutes=1)
    expired = issue_token(path, "old-ci", ["admin"], expires_at=past)
    return Tokens(path, read, write, admin, expired)


@pytest.fixture
async def suite(dev_ca: DevCAFiles, tokens: Tokens) -> AsyncIterator[Suite]:
    settings = load_settings(
        env={},
        overrides={
            "listen": "127.0.0.1:0",
            "tls_cert": str(dev_ca.server_cert),
            "tls_key": str(dev_ca.server_key),
            "tls_client_ca": str(dev_ca.ca_cert),
            "auth_tokens_file": str(tokens.path),
        },
    )
    resources = Resources(settings)
    leases, orchestrator = RecordingLeases(), RecordingOrchestrator()
    config = ServerConfig(registrations(leases, orchestrator), listen=settings.listen, grace=0)
    server, port = build_server(await secure_and_observe(config, settings, resources))
    await server.start()
    suite = Suite(server, port, dev_ca, tokens, settings, leases, orchestrator)
    try:
        yield suite
    finally:
        for channel in suite.channels:
            await channel.close()
        await server.stop(0)
        await resources.close()
