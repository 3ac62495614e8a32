"""``suite``: one running suite shared by a test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cli_support import running_suite

from mobkit.etcd.process import EtcdProcess
from mobkit.testing.processes import ServeProcess


@pytest.fixture(scope="module")
def suite(
    etcd_session: EtcdProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    with running_suite(tmp_path_factory.mktemp("cli-suite"), etcd_session.endpoint) as proc:
        yield proc
