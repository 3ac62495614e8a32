"""With etcd gone, ``mobkit status`` says so (``etcd unreachable at …``) and answers
with the replica's own view, instead of waiting out its deadline and blaming the
orchestrator's address."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import grpc
import pytest
from cli_support import INTERNAL, TEAM, mobkit, wait_active
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mobkit.etcd.process import EtcdProcess
from mobkit.testing.suite import suite_process, write_roster

pytestmark = pytest.mark.timeout(180)


def wait_health(address: str, wanted: int, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status != wanted:
            assert time.monotonic() < deadline, f"health never became {wanted}"
            time.sleep(0.05)


def test_status_names_the_unreachable_etcd(etcd: EtcdProcess, tmp_path: Path) -> None:
    roster = write_roster(tmp_path / "roster.toml", TEAM, internal=INTERNAL)
    proc = suite_process(
        tmp_path,
        etcd.endpoint,
        roster,
        prefix=f"/down-{uuid.uuid4().hex[:8]}",
        extra=["--etcd-alarm-interval", "0.2"],
    )
    with proc:
        assert proc.address is not None
        wait_active(proc.address, TEAM)
        etcd.kill()
        wait_health(proc.address, health_pb2.HealthCheckResponse.NOT_SERVING)
        # Without etcd the fleet view cannot be read: this replica answers with its own.
        run = mobkit("status", "--addr", proc.address, "--retries", "0")
        assert run.returncode == 0, run.stderr
        warning = run.stderr.splitlines()
        assert len(warning) == 1 and warning[0].startswith(
            f"warning: etcd unreachable at {etcd.endpoint} ("
        ), run.stderr
        assert all(i in run.stdout for i in TEAM)
        etcd.restart(graceful=False)
        wait_health(proc.address, health_pb2.HealthCheckResponse.SERVING)
        run = mobkit("status", "--addr", proc.address)
        assert (run.returncode, run.stderr) == (0, "")
