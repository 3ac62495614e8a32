"""One asyncio client per provider service: the suite's own gRPC adapters.

The orchestrator reaches its providers through these same adapters
(``mobkit.<service>.client``), so a script and the orchestrator see the same
domain types and exceptions. They get the channel (deadlines, retries, TLS,
token) from :class:`~mobkit.client.aio.AsyncMobKit` or :func:`open_channel`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc

from mobkit.continuity.client import GrpcContinuityStore
from mobkit.core.types import ManagedPeerEdge, TopologyContext
from mobkit.customizer.client import GrpcAgentCustomizer
from mobkit.lease.client import GrpcLeaseProvider
from mobkit.lease.domain import Lease
from mobkit.roster.client import GrpcRosterProvider
from mobkit.runtime.client import GrpcAgentRuntime
from mobkit.topology.client import GrpcTopologyProvider


class AsyncLeaseClient(GrpcLeaseProvider):
    """``LeaseService``: acquire / renew / release / list leases."""

    async def leases(self, *, page_size: int = 0) -> AsyncIterator[Lease]:
        """Every held lease, ordered by identity, fetching pages as it goes."""
        token = ""
        while True:
            page, token = await self.list_leases(page_size, token)
            for lease in page:
                yield lease
            if not token:
                return


class AsyncContinuityClient(GrpcContinuityStore):
    """``ContinuityStoreService``. Retries come from the channel (idempotent calls on
    UNAVAILABLE), not from the adapter's own loop."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float | None = None) -> None:
        super().__init__(channel, timeout=timeout, retries=0)


class AsyncRosterClient(GrpcRosterProvider):
    """``RosterService``: the current roster and its changes."""


class AsyncTopologyClient(GrpcTopologyProvider):
    """``TopologyService``: the managed peer edges a roster implies."""

    async def edges(
        self, target_identities: Sequence[str], context: TopologyContext, *, page_size: int = 0
    ) -> AsyncIterator[ManagedPeerEdge]:
        """Every edge among ``target_identities``, fetching pages as it goes."""
        token = ""
        while True:
            page = await self.compute_edges_page(target_identities, context, page_size, token)
            for edge in page.edges:
                yield edge
            token = page.next_page_token
            if not token:
                return


class AsyncCustomizerClient(GrpcAgentCustomizer):
    """``AgentCustomizerService`` (MobKit's own or a user's, in any language)."""


class AsyncRuntimeClient(GrpcAgentRuntime):
    """``AgentRuntimeService``: sessions and turns of the agent runtime."""
