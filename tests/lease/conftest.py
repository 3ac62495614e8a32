"""Backends for the lease tests: the same behaviour checks run against each of them.

* ``memory``: :class:`MemoryLeaseProvider` on a hand-moved clock;
* ``etcd``: :class:`EtcdLeaseProvider` on the session's real etcd, under a prefix of
  the test's own;
* ``grpc``: the real LeaseService (etcd backend) on port 0, called through
  :class:`GrpcLeaseProvider`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from lease_support import Backend, FakeClock

from mobkit.etcd.client import EtcdClient
from mobkit.etcd.process import EtcdProcess
from mobkit.lease.client import GrpcLeaseProvider
from mobkit.lease.etcd_backend import EtcdLeaseProvider
from mobkit.lease.memory import MemoryLeaseProvider
from mobkit.testing.servers import running_services


@pytest_asyncio.fixture(params=["memory", "etcd", "grpc"])
async def backend(request: pytest.FixtureRequest, etcd_prefix: str) -> AsyncIterator[Backend]:
    if request.param == "memory":
        clock = FakeClock()

        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        yield Backend("memory", MemoryLeaseProvider(clock), advance)
        return
    etcd: EtcdProcess = request.getfixturevalue("etcd_session")
    if request.param == "etcd":
        async with await EtcdClient.connect([etcd.endpoint], timeout=5.0) as client:
            yield Backend("etcd", EtcdLeaseProvider(client, etcd_prefix), asyncio.sleep)
        return
    async with running_services(
        ["lease"], etcd_endpoints=[etcd.endpoint], etcd_prefix=etcd_prefix
    ) as (_, channel, _settings):
        # Releases polled often, so the release-watch tests do not wait long.
        yield Backend("grpc", GrpcLeaseProvider(channel, release_poll=0.1), asyncio.sleep)
