"""gRPC surface of a :class:`~mobkit.lease.domain.LeaseProvider`: convert, call, convert.

Errors are raised as domain exceptions; the server interceptor turns them into a
status with one ErrorInfo through :data:`ERRORS`.
"""

from __future__ import annotations

from datetime import timedelta

import grpc

from mobkit.gen.lease.v1 import lease_service_pb2 as pb
from mobkit.gen.lease.v1 import lease_service_pb2_grpc as pb_grpc
from mobkit.lease.domain import LeaseProvider
from mobkit.security.auth import Principal
from mobkit.server import context as callctx
from mobkit.server.errors import service_errors
from mobkit.wire import lease as wire

SERVICE_NAME = "mobkit.lease.v1.LeaseService"

# LeaseProviderUnavailable is a BackendUnavailable: UNAVAILABLE through the base entry.
ERRORS: dict[type[BaseException], grpc.StatusCode] = service_errors()


class LeaseServicer(pb_grpc.LeaseServiceServicer):
    def __init__(self, provider: LeaseProvider, default_ttl: timedelta) -> None:
        self._provider = provider
        self._default_ttl = default_ttl

    async def AcquireLeases(
        self, request: pb.AcquireLeasesRequest, context: grpc.aio.ServicerContext
    ) -> pb.AcquireLeasesResponse:
        ttl = (
            wire.duration_from_proto(request.ttl) if request.HasField("ttl") else self._default_ttl
        )
        holder = _holder(request.runtime_instance, "AcquireLeases") or request.runtime_instance
        results = await self._provider.acquire_leases(list(request.identities), holder, ttl)
        response = pb.AcquireLeasesResponse()
        wire.add_acquire_results(response.results, results)
        return response

    async def RenewLeases(
        self, request: pb.RenewLeasesRequest, context: grpc.aio.ServicerContext
    ) -> pb.RenewLeasesResponse:
        results = await self._provider.renew_leases(
            wire.grants_from_proto(request.grants),
            _holder(request.runtime_instance, "RenewLeases"),
        )
        response = pb.RenewLeasesResponse()
        wire.add_renew_results(response.results, results)
        return response

    async def ReleaseLeases(
        self, request: pb.ReleaseLeasesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReleaseLeasesResponse:
        await self._provider.release_leases(
            wire.grants_from_proto(request.grants),
            _holder(request.runtime_instance, "ReleaseLeases"),
        )
        return pb.ReleaseLeasesResponse()

    async def ListLeases(
        self, request: pb.ListLeasesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListLeasesResponse:
        leases, next_token = await self._provider.list_leases(request.page_size, request.page_token)
        return pb.ListLeasesResponse(
            leases=[wire.lease_to_proto(lease) for lease in leases], next_page_token=next_token
        )


def _holder(requested: str, method: str) -> str | None:
    """Who a lease call acts as: the request's ``runtime_instance``, checked against the
    caller's token when it is scoped to runtime instances (auth on); None: holder-less."""
    principal = callctx.caller.get()
    if isinstance(principal, Principal):
        return principal.lease_holder(requested or None, method)
    return requested or None
