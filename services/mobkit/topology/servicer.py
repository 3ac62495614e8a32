"""gRPC surface of a :class:`~mobkit.topology.domain.TopologyProvider`."""

from __future__ import annotations

import grpc

from mobkit.core.errors import SelfEdge
from mobkit.gen.topology.v1 import topology_service_pb2 as pb
from mobkit.gen.topology.v1 import topology_service_pb2_grpc as pb_grpc
from mobkit.server.errors import service_errors
from mobkit.topology.domain import TopologyProvider
from mobkit.wire import topology as wire

SERVICE_NAME = "mobkit.topology.v1.TopologyService"

# TopologyUnavailable is a BackendUnavailable: UNAVAILABLE through the base entry.
ERRORS: dict[type[BaseException], grpc.StatusCode] = service_errors(SelfEdge)


class TopologyServicer(pb_grpc.TopologyServiceServicer):
    def __init__(self, provider: TopologyProvider) -> None:
        self._provider = provider

    async def ComputeEdges(
        self, request: pb.ComputeEdgesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ComputeEdgesResponse:
        page = await self._provider.compute_edges_page(
            list(request.target_identities),
            wire.topology_context_from_proto(request.context),
            request.page_size,
            request.page_token,
        )
        return wire.page_to_proto(page)
