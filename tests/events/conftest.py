"""Fixtures of the event log tests: logs on both backends, replicas' etcd clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from mobkit.etcd.client import EtcdClient
from mobkit.etcd.process import EtcdProcess
from mobkit.events.domain import EventLog
from mobkit.events.etcd_backend import EtcdEventLog
from mobkit.events.memory import MemoryEventLog


@pytest.fixture(params=["memory", "etcd"])
async def make_log(
    request: pytest.FixtureRequest, etcd_client: EtcdClient, etcd_prefix: str
) -> Callable[[], EventLog]:
    """A factory of logs that share one backing store (one memory log, or one prefix)."""
    if request.param == "memory":
        shared = MemoryEventLog("mob")
        return lambda: shared
    return lambda: EtcdEventLog(etcd_client, etcd_prefix, "mob")


@pytest.fixture
async def two_clients(etcd_session: EtcdProcess) -> AsyncIterator[tuple[EtcdClient, EtcdClient]]:
    """Two etcd clients on the session etcd, as two replicas would have."""
    async with (
        await EtcdClient.connect([etcd_session.endpoint]) as c1,
        await EtcdClient.connect([etcd_session.endpoint]) as c2,
    ):
        yield c1, c2
