"""gRPC client adapter: a :class:`~mobkit.topology.domain.TopologyProvider` over the
TopologyService, raising the same domain exceptions as an in-process provider."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from mobkit.core.errors import TopologyUnavailable
from mobkit.core.types import ManagedPeerEdge, TopologyContext
from mobkit.gen.topology.v1 import topology_service_pb2 as pb
from mobkit.gen.topology.v1 import topology_service_pb2_grpc as pb_grpc
from mobkit.topology.domain import EdgePage, iter_edges
from mobkit.wire import topology as wire
from mobkit.wire.calls import Calls, decoder


class GrpcTopologyProvider:
    """Calls a remote TopologyService. ``timeout`` bounds each page (seconds);
    ``retries`` repeats a page on UNAVAILABLE (:mod:`mobkit.wire.calls`)."""

    def __init__(
        self, channel: grpc.aio.Channel, *, timeout: float | None = 30.0, retries: int = 0
    ) -> None:
        self._stub = pb_grpc.TopologyServiceStub(channel)
        self._call = Calls(decoder(TopologyUnavailable), timeout=timeout, retries=retries)

    async def compute_edges_page(
        self,
        target_identities: Sequence[str],
        context: TopologyContext,
        page_size: int = 0,
        page_token: str = "",
    ) -> EdgePage:
        request = pb.ComputeEdgesRequest(
            target_identities=list(target_identities),
            context=wire.topology_context_to_proto(context),
            page_size=page_size,
            page_token=page_token,
        )
        reply = await self._call(self._stub.ComputeEdges, request, idempotent=True)
        return wire.page_from_proto(reply, targets=set(target_identities))

    async def compute_edges(
        self, target_identities: Sequence[str], context: TopologyContext
    ) -> list[ManagedPeerEdge]:
        """Every page, collected (use :func:`~mobkit.topology.domain.iter_edges` to stream)."""
        return [e async for e in iter_edges(self, target_identities, context)]
