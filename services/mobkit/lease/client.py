"""gRPC client adapter: a :class:`~mobkit.lease.domain.LeaseProvider` over the
LeaseService, raising the same domain exceptions as an in-process provider."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import grpc

from mobkit.core.errors import LeaseProviderUnavailable
from mobkit.core.types import LeaseAcquireResult, LeaseGrant, LeaseRenewResult
from mobkit.gen.lease.v1 import lease_service_pb2 as pb
from mobkit.gen.lease.v1 import lease_service_pb2_grpc as pb_grpc
from mobkit.lease.domain import Lease, holders_from_pages
from mobkit.wire import lease as wire
from mobkit.wire.errors import error_from_rpc


class GrpcLeaseProvider:
    """Calls a remote LeaseService. ``timeout`` bounds each call (seconds)."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float | None = 30.0) -> None:
        self._stub = pb_grpc.LeaseServiceStub(channel)
        self._timeout = timeout

    async def acquire_leases(
        self, identities: Sequence[str], runtime_instance: str, ttl: timedelta
    ) -> list[LeaseAcquireResult]:
        request = pb.AcquireLeasesRequest(
            identities=list(identities),
            runtime_instance=runtime_instance,
            ttl=wire.duration_to_proto(ttl),
        )
        try:
            reply = await self._stub.AcquireLeases(request, timeout=self._timeout)
        except grpc.RpcError as err:
            raise error_from_rpc(err, LeaseProviderUnavailable) from None
        return wire.acquire_results_from_proto(reply.results)

    async def renew_leases(
        self, grants: Sequence[LeaseGrant], runtime_instance: str | None = None
    ) -> list[LeaseRenewResult]:
        request = pb.RenewLeasesRequest(runtime_instance=runtime_instance or "")
        wire.add_grants(request.grants, grants)
        try:
            reply = await self._stub.RenewLeases(request, timeout=self._timeout)
        except grpc.RpcError as err:
            raise error_from_rpc(err, LeaseProviderUnavailable) from None
        return wire.renew_results_from_proto(reply.results)

    async def release_leases(
        self, grants: Sequence[LeaseGrant], runtime_instance: str | None = None
    ) -> None:
        request = pb.ReleaseLeasesRequest(runtime_instance=runtime_instance or "")
        wire.add_grants(request.grants, grants)
        try:
            await self._stub.ReleaseLeases(request, timeout=self._timeout)
        except grpc.RpcError as err:
            raise error_from_rpc(err, LeaseProviderUnavailable) from None

    async def list_leases(
        self, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Lease], str]:
        request = pb.ListLeasesRequest(page_size=page_size, page_token=page_token)
        try:
            reply = await self._stub.ListLeases(request, timeout=self._timeout)
        except grpc.RpcError as err:
            raise error_from_rpc(err, LeaseProviderUnavailable) from None
        return [wire.lease_from_proto(m) for m in reply.leases], reply.next_page_token

    # ListLeases is the service's only read: ownership questions page through it.

    async def holder_of(self, identity: str) -> str | None:
        return (await self.holders()).get(identity)

    async def holders(self) -> dict[str, str]:
        return await holders_from_pages(self)
