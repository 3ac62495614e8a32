"""Pytest fixtures running real etcd processes on free loopback ports.

Register with ``pytest_plugins = ["mobkit.testing.etcd_fixtures"]``.

* ``etcd``          a fresh single-member etcd per test (may be killed or restarted)
* ``etcd_session``  one etcd shared by the session; tests isolate with ``etcd_prefix``
* ``etcd_prefix``   a key prefix unique to the test, e.g. ``/t/test_put-3fa2c1d0/``
* ``etcd_cluster``  a fresh 3-member cluster per test
* ``etcd_client``   an :class:`EtcdClient` on ``etcd_session``
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from mobkit.etcd.client import EtcdClient
from mobkit.etcd.process import EtcdProcess
from mobkit.testing.etcd_cluster import EtcdCluster
from mobkit.testing.etcd_member import EtcdMember

__all__ = ["etcd", "etcd_client", "etcd_cluster", "etcd_prefix", "etcd_session"]

CLIENT_TIMEOUT = 5.0


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdMember]:
    """A fresh single-member etcd (fsync off: tests do not survive power loss anyway),
    for failure tests: it may be killed, restarted, paused."""
    proc = EtcdMember(tmp_path / "etcd", unsafe_no_fsync=True)
    proc.start()
    try:
        yield proc
    finally:
        proc.kill()


@pytest.fixture(scope="session")
def etcd_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdProcess]:
    """One etcd for the whole session; never kill it, use ``etcd`` for failure tests."""
    proc = EtcdProcess(tmp_path_factory.mktemp("etcd-session"), unsafe_no_fsync=True)
    proc.start()
    try:
        yield proc
    finally:
        proc.kill()


@pytest.fixture
def etcd_prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix no other test uses: ``/t/<test name>-<random>/``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:60]
    return f"/t/{name}-{uuid.uuid4().hex[:8]}/"


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path / "etcd-cluster", n=3, unsafe_no_fsync=True)
    cluster.start()
    try:
        yield cluster
    finally:
        for member in cluster.members:
            member.kill()


@pytest_asyncio.fixture
async def etcd_client(etcd_session: EtcdProcess) -> AsyncIterator[EtcdClient]:
    client = await EtcdClient.connect([etcd_session.endpoint], timeout=CLIENT_TIMEOUT)
    try:
        yield client
    finally:
        await client.close()
