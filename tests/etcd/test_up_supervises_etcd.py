"""``mobkit up`` keeps its own etcd alive: after a SIGKILL of the etcd child, the child
is reaped (no defunct process), restarted on the same data and ports, the loss and
the recovery are logged and recorded as events, health is SERVING again, and every turn acknowledged before the kill is still in the agent's state. A second
``up`` on the same data dir meanwhile refuses, naming the first."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.testing.processes import UpProcess
from mobkit.testing.suite import send_request, stub, until

pytestmark = pytest.mark.timeout(300)

SERVING = health_pb2.HealthCheckResponse.SERVING
WORDS = [f"milk-{i}" for i in range(5)]


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def etcd_child(pid: int) -> int:
    (found,) = [
        c
        for c in children(pid)
        if b"etcd" in Path(f"/proc/{c}/cmdline").read_bytes().split(b"\0")[0]
    ]
    return found


def state(pid: int) -> str | None:
    """The process's state letter (``Z``: defunct), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


async def test_up_restarts_its_etcd_after_a_sigkill_and_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    args = ["--data-dir", str(data), "--etcd-alarm-interval", "0.5", "--log-level", "WARNING"]
    up = UpProcess(args, log_dir=tmp_path)
    up.start(timeout=120)
    try:
        assert up.address is not None
        async with grpc.aio.insecure_channel(up.address) as channel:
            orchestrator, health = stub(channel), health_pb2_grpc.HealthStub(channel)
            for word in WORDS:  # acknowledged: each reply is a checkpointed turn
                await orchestrator.Send(send_request("coordinator", f"remember {word}"), timeout=30)
            first = etcd_child(up.pid)
            os.kill(first, signal.SIGKILL)

            async def back() -> bool:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                return "etcd is back" in up.log_tail(50_000) and reply.status == SERVING

            await until(back, "etcd restarted and health SERVING again", timeout=90)
            assert state(first) is None  # reaped, not left defunct
            restarted = etcd_child(up.pid)
            assert restarted != first
            assert f"etcd (pid {first}) killed by SIGKILL; restarting it" in up.log_tail(50_000)

            reply = await orchestrator.Send(send_request("coordinator", "recall"), timeout=30)
            missing = [w for w in WORDS if w not in reply.receipt.output]
            assert not missing, reply.receipt.output

            seen: list[str] = []

            async def recorded() -> bool:
                page = await orchestrator.ListEvents(svc.ListEventsRequest(page_size=1000))
                seen[:] = [e.kind for e in page.events if e.kind.startswith("backend_")]
                return "backend_available" in seen

            await until(recorded, "backend_unavailable and backend_available events")
            assert seen == ["backend_unavailable", "backend_available"], seen

        second = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "mobkit.cli", "up", "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (second.returncode, second.stderr) == (
            2,
            f"mobkit up: data dir {data.resolve()} is in use by mobkit up (pid {up.pid}, "
            f"serving {up.address}): stop it first, or give another --data-dir\n",
        )
        assert up.stop(timeout=60) == 0
        assert state(restarted) is None  # stopped with the suite
    finally:
        up.kill()
