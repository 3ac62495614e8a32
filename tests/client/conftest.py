"""``suite``: one running suite shared by a test module; ``own_suite``: one per test
(for tests that kill and restart it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from client_support import running_suite

from mobkit.etcd.process import EtcdProcess
from mobkit.testing.processes import ServeProcess


@pytest.fixture(scope="module")
def suite(
    etcd_session: EtcdProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    with running_suite(tmp_path_factory.mktemp("suite"), etcd_session.endpoint) as proc:
        yield proc


@pytest.fixture
def own_suite(etcd_session: EtcdProcess, tmp_path: Path) -> Iterator[ServeProcess]:
    with running_suite(tmp_path, etcd_session.endpoint) as proc:
        yield proc
