"""gRPC client adapter: a :class:`~mobkit.lease.domain.LeaseProvider` over the
LeaseService, raising the same domain exceptions as an in-process provider."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import timedelta

import grpc

from mobkit.core.errors import LeaseProviderUnavailable
from mobkit.core.types import LeaseAcquireResult, LeaseGrant, LeaseRenewResult
from mobkit.gen.lease.v1 import lease_service_pb2 as pb
from mobkit.gen.lease.v1 import lease_service_pb2_grpc as pb_grpc
from mobkit.lease.domain import Lease, holders_from_pages
from mobkit.wire import lease as wire
from mobkit.wire.calls import Calls, decoder


class GrpcLeaseProvider:
    """Calls a remote LeaseService. ``timeout`` bounds each call (seconds); ``retries``
    repeats a call on UNAVAILABLE (all four are safe to repeat: :mod:`mobkit.wire.calls`)."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout: float | None = 30.0,
        retries: int = 0,
        release_poll: float = 1.0,
    ) -> None:
        self._stub = pb_grpc.LeaseServiceStub(channel)
        self._release_poll = release_poll
        self._call = Calls(decoder(LeaseProviderUnavailable), timeout=timeout, retries=retries)

    async def acquire_leases(
        self, identities: Sequence[str], runtime_instance: str, ttl: timedelta
    ) -> list[LeaseAcquireResult]:
        request = pb.AcquireLeasesRequest(
            identities=list(identities),
            runtime_instance=runtime_instance,
            ttl=wire.duration_to_proto(ttl),
        )
        # A repeated acquire answers Acquired with the grant this instance already holds.
        reply = await self._call(self._stub.AcquireLeases, request, idempotent=True)
        return wire.acquire_results_from_proto(reply.results)

    async def renew_leases(
        self, grants: Sequence[LeaseGrant], runtime_instance: str | None = None
    ) -> list[LeaseRenewResult]:
        request = pb.RenewLeasesRequest(runtime_instance=runtime_instance or "")
        wire.add_grants(request.grants, grants)
        reply = await self._call(self._stub.RenewLeases, request, idempotent=True)
        return wire.renew_results_from_proto(reply.results)

    async def release_leases(
        self, grants: Sequence[LeaseGrant], runtime_instance: str | None = None
    ) -> None:
        request = pb.ReleaseLeasesRequest(runtime_instance=runtime_instance or "")
        wire.add_grants(request.grants, grants)
        await self._call(self._stub.ReleaseLeases, request, idempotent=True)  # stale: no-op

    async def list_leases(
        self, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Lease], str]:
        request = pb.ListLeasesRequest(page_size=page_size, page_token=page_token)
        reply = await self._call(self._stub.ListLeases, request, idempotent=True)
        return [wire.lease_from_proto(m) for m in reply.leases], reply.next_page_token

    # ListLeases is the service's only read: ownership questions page through it.

    async def holder_of(self, identity: str) -> str | None:
        return (await self.holders()).get(identity)

    async def holders(self) -> dict[str, str]:
        return await holders_from_pages(self)

    async def watch_releases(self, notify: Callable[[str], None]) -> None:
        """The LeaseService has no watch: every ``release_poll`` seconds, the identities
        held at the previous look and not (or by another holder) at this one."""
        before = await self.holders()
        while True:
            await asyncio.sleep(self._release_poll)
            now = await self.holders()
            for identity, holder in before.items():
                if now.get(identity) != holder:
                    notify(identity)
            before = now
