"""EtcdSupervisor on a real etcd: a killed member is reaped at once and started again on
its data; a start that fails is retried with backoff until one succeeds."""

from __future__ import annotations

import logging
import os
import shutil
import signal
from pathlib import Path

import pytest

from mobkit.etcd.client import EtcdClient
from mobkit.etcd.process import EtcdProcess
from mobkit.etcd.supervisor import EtcdSupervisor, describe_exit
from mobkit.testing.suite import eventually

pytestmark = pytest.mark.timeout(120)


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def test_exit_statuses_read_as_people_say_them() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(1) == "exited with status 1"


async def test_a_killed_etcd_is_reaped_and_restarted_after_failed_attempts(
    etcd: EtcdProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mobkit.etcd.supervisor")
    async with await EtcdClient.connect([etcd.endpoint], timeout=10) as client:
        await client.put("/kept", b"acknowledged")
        running: list[bool] = []  # etcd.running at each on_change: lost, then back
        supervisor = EtcdSupervisor(
            etcd, on_change=lambda: running.append(etcd.running), backoff_min=0.05, backoff_max=0.2
        )
        supervisor.start()
        real, false = etcd.binary, shutil.which("false")
        assert false is not None
        try:
            etcd.binary = Path(false)  # the next starts fail at once
            first = etcd.pid
            assert first is not None
            os.kill(first, signal.SIGKILL)

            def failed(n: int) -> bool:
                return sum("did not start again" in r.message for r in caplog.records) >= n

            await eventually(lambda: failed(2), "two failed restarts")
            assert running == [False] and supervisor.restarts == 0
            assert gone(first)  # reaped: no defunct child is left
            etcd.binary = real
            await eventually(lambda: supervisor.restarts == 1, "a restart that works")
            assert running == [False, True] and etcd.pid != first
            kept = await client.get("/kept")
            assert kept is not None and kept.value == b"acknowledged"
        finally:
            await supervisor.stop()
            etcd.binary = real
    messages = [r.message for r in caplog.records]
    assert messages[0].startswith(f"etcd (pid {first}) killed by SIGKILL; restarting it in")
    assert messages[-1].startswith(f"etcd is back (pid {etcd.pid}, {etcd.endpoint})")
