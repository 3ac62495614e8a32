"""Support for the security tests: two services built from the generated base
servicers (a read and a write RPC on the lease service; a stream and an admin RPC
on the orchestrator) that record every call reaching them. conftest.py serves them
over mTLS with bearer tokens through the same wiring ``mobkit serve`` uses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mobkit.gen.lease.v1 import lease_pb2
from mobkit.gen.lease.v1 import lease_service_pb2 as lease_pb
from mobkit.gen.lease.v1 import lease_service_pb2_grpc as lease_grpc
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as orch_pb
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2_grpc as orch_grpc
from mobkit.security.devca import DevCAFiles
from mobkit.security.tls import ClientTLS, secure_channel
from mobkit.server.app import MobKitServer, ServiceRegistration
from mobkit.server.config import Settings
from mobkit.server.errors import common_errors


class RecordingLeases(lease_grpc.LeaseServiceServicer):
    """ListLeases (read) and AcquireLeases (write) over a dict; counts handler entries."""

    def __init__(self) -> None:
        self.held: dict[str, str] = {}
        self.calls: list[str] = []
        self._next_token = 1

    async def ListLeases(self, request: Any, context: Any) -> Any:
        self.calls.append("ListLeases")
        return lease_pb.ListLeasesResponse(
            leases=[lease_pb2.Lease(identity=i, holder=h) for i, h in sorted(self.held.items())]
        )

    async def AcquireLeases(self, request: Any, context: Any) -> Any:
        self.calls.append("AcquireLeases")
        results = []
        for identity in request.identities:
            self.held.setdefault(identity, request.runtime_instance)
            self._next_token += 1
            grant = lease_pb2.LeaseGrant(identity=identity, fencing_token=self._next_token)
            results.append(lease_pb2.LeaseAcquireResult(acquired=grant))
        return lease_pb.AcquireLeasesResponse(results=results)


class RecordingOrchestrator(orch_grpc.OrchestratorServiceServicer):
    """WatchEvents (read, server stream) and ResetIdentity (admin)."""

    def __init__(self) -> None:
        self.resets: list[str] = []

    async def WatchEvents(self, request: Any, context: Any) -> AsyncIterator[Any]:
        yield orch_pb.WatchEventsResponse()

    async def ResetIdentity(self, request: Any, context: Any) -> Any:
        self.resets.append(request.identity)
        return orch_pb.ResetIdentityResponse()


@dataclass
class Tokens:
    path: Path
    read: str
    write: str
    admin: str
    expired: str


@dataclass
class Suite:
    server: MobKitServer
    port: int
    ca: DevCAFiles
    tokens: Tokens
    settings: Settings
    leases: RecordingLeases
    orchestrator: RecordingOrchestrator
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client_tls(self) -> ClientTLS:
        ca = self.ca
        return ClientTLS(ca_file=ca.ca_cert, cert_file=ca.client_cert, key_file=ca.client_key)

    def channel(self, tls: ClientTLS | None, token: str | None = None) -> grpc.aio.Channel:
        channel = secure_channel(self.target, tls, token=token)
        self.channels.append(channel)
        return channel


def registrations(
    leases: RecordingLeases, orchestrator: RecordingOrchestrator
) -> list[ServiceRegistration]:
    return [
        ServiceRegistration(
            "mobkit.lease.v1.LeaseService",
            lambda s: lease_grpc.add_LeaseServiceServicer_to_server(leases, s),
            errors=common_errors(),
        ),
        ServiceRegistration(
            "mobkit.orchestrator.v1.OrchestratorService",
            lambda s: orch_grpc.add_OrchestratorServiceServicer_to_server(orchestrator, s),
            errors=common_errors(),
        ),
    ]


def error_reason(err: grpc.aio.AioRpcError) -> str:
    """The reason of the one ErrorInfo (domain mobkit.dev) the error must carry."""
    status = rpc_status.from_call(err)
    assert status is not None, "error carries no google.rpc.Status"
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
    assert len(infos) == 1, f"expected exactly one ErrorInfo, got {len(infos)}"
    assert infos[0].domain == "mobkit.dev"
    return infos[0].reason
