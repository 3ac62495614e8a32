"""Proto <-> domain for ``mobkit.topology.v1``: edges, topology context, edge pages."""

from __future__ import annotations

from mobkit.core.identity import parse_identity
from mobkit.core.types import ManagedPeerEdge, TopologyContext
from mobkit.gen.topology.v1 import topology_pb2, topology_service_pb2
from mobkit.topology.domain import EdgePage
from mobkit.wire.roster import spec_from_proto, spec_to_proto


def edge_to_proto(edge: ManagedPeerEdge) -> topology_pb2.ManagedPeerEdge:
    return topology_pb2.ManagedPeerEdge(a=edge.a, b=edge.b)


def edge_from_proto(msg: topology_pb2.ManagedPeerEdge) -> ManagedPeerEdge:
    """Validated and put in canonical order; a self edge raises SELF_EDGE."""
    return ManagedPeerEdge.new(parse_identity(msg.a), parse_identity(msg.b))


def topology_context_to_proto(context: TopologyContext) -> topology_pb2.TopologyContext:
    return topology_pb2.TopologyContext(roster=[spec_to_proto(s) for s in context.roster])


def topology_context_from_proto(msg: topology_pb2.TopologyContext) -> TopologyContext:
    return TopologyContext(roster=tuple(spec_from_proto(s) for s in msg.roster))


def page_to_proto(page: EdgePage) -> topology_service_pb2.ComputeEdgesResponse:
    return topology_service_pb2.ComputeEdgesResponse(
        edges=[topology_pb2.ManagedPeerEdge(a=e.a, b=e.b) for e in page.edges],
        next_page_token=page.next_page_token,
        total_edges=page.total_edges,
    )


def page_from_proto(msg: topology_service_pb2.ComputeEdgesResponse) -> EdgePage:
    return EdgePage(
        edges=tuple(edge_from_proto(e) for e in msg.edges),
        next_page_token=msg.next_page_token,
        total_edges=int(msg.total_edges),
    )
