"""A fleet of real orchestrator replicas (`mobkit serve all`) on one etcd, for tests
and benchmarks, with bounded polling helpers."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import grpc

from mobkit.core.holder import Holder
from mobkit.gen.orchestrator.v1 import orchestrator_pb2 as pb
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.testing.processes import ServeProcess
from mobkit.testing.suite import stub
from mobkit.wire.errors import error_info

ACTIVE = pb.IDENTITY_LIFECYCLE_STATE_ACTIVE


class Fleet:
    def __init__(self, tmp: Path, endpoints: str, roster: Path, ttl: float) -> None:
        self.tmp, self.endpoints, self.roster, self.ttl = tmp, endpoints, roster, ttl
        self.prefix = f"/fleet-{uuid.uuid4().hex[:8]}"
        self.replicas: list[ServeProcess] = []

    def add(
        self, name: str | None = None, extra: list[str] | None = None, wait: bool = True
    ) -> ServeProcess:
        name = name or f"r{len(self.replicas)}"
        args = [
            "--etcd-endpoints",
            self.endpoints,
            "--etcd-prefix",
            self.prefix,
            "--roster",
            str(self.roster),
            "--data-dir",
            str(self.tmp / name),
            "--continuity-backend",
            "etcd",
            "--lease-ttl",
            str(self.ttl),
            "--runtime-instance",
            name,
            "--log-level",
            "WARNING",
            "--reconcile-interval",
            "5",
            *(extra or []),
        ]
        proc = ServeProcess("all", args, log_dir=self.tmp, name=name)
        if wait:
            proc.start(timeout=90)
        self.replicas.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.replicas:
            proc.resume()
            proc.kill()


async def all_statuses(channel: grpc.aio.Channel) -> list[pb.IdentityStatus]:
    out: list[pb.IdentityStatus] = []
    token = ""
    while True:
        reply = await stub(channel).ListIdentityStatuses(
            svc.ListIdentityStatusesRequest(page_size=1000, page_token=token), timeout=10
        )
        out.extend(reply.statuses)
        token = reply.next_page_token
        if not token:
            return out


async def wait_fleet(
    channel: grpc.aio.Channel, expected: int, owners: int, timeout: float
) -> Counter[str]:
    """Until ``expected`` identities are Active across exactly ``owners`` replicas."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Counter[str] = Counter()
    while loop.time() < deadline:
        began = loop.time()
        try:
            statuses = await all_statuses(channel)
            active = [s for s in statuses if s.state == ACTIVE and s.HasField("owner")]
            last = Counter(Holder(s.owner).instance for s in active)
            if len(active) == expected and len(last) == owners:
                return last
        except grpc.aio.AioRpcError:
            pass
        # Each poll fans out to every replica: keep polling to about a third of the time.
        await asyncio.sleep(max(0.1, 2 * (loop.time() - began)))
    raise AssertionError(f"fleet never reached {expected} active on {owners} owners: {dict(last)}")


def between_owners(err: grpc.aio.AioRpcError) -> bool:
    """A documented answer while an owner is paused, dying or being replaced: retry it.

    NOT_ACTIVE (an identity between owners), UNAVAILABLE with MobKit's ErrorInfo (a
    backend or the owner briefly unreachable), or the call's own deadline (the replica
    it reached was paused). Anything else is a defect, not a failover.
    """
    info = error_info(err)
    if info is None:
        return err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    if err.code() == grpc.StatusCode.FAILED_PRECONDITION:
        return info.reason == "NOT_ACTIVE"
    return err.code() == grpc.StatusCode.UNAVAILABLE


async def activations(channel: grpc.aio.Channel) -> dict[str, list[tuple[int, str]]]:
    """Each identity's ``activated`` events in log order: (fencing token, owner)."""
    out: dict[str, list[tuple[int, str]]] = {}
    token = ""
    while True:
        request = svc.ListEventsRequest(page_size=1000)
        if token:
            request.page_token = token
        reply = await stub(channel).ListEvents(request, timeout=10)
        for event in reply.events:
            if event.kind == "activated":
                fields = event.data.fields  # a Struct: its numbers are doubles
                out.setdefault(event.agent_identity, []).append(
                    (int(fields["fencing_token"].number_value), fields["owner"].string_value)
                )
        if not (token := reply.next_page_token):
            return out
