"""Proto <-> domain for ``mobkit.topology.v1``: edges, topology context, edge pages."""

from __future__ import annotations

from collections.abc import Collection

from mobkit.core.errors import InvalidArgument
from mobkit.core.identity import AgentIdentity, parse_identity
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
    return TopologyContext(
        roster=tuple(spec_from_proto(s, f"context.roster[{i}]") for i, s in enumerate(msg.roster))
    )


def page_to_proto(page: EdgePage) -> topology_service_pb2.ComputeEdgesResponse:
    msg = topology_service_pb2.ComputeEdgesResponse(
        next_page_token=page.next_page_token, total_edges=page.total_edges
    )
    add = msg.edges.add  # pages hold up to 50,000 edges: the cheapest way to fill them
    for edge in page.edges:
        add(a=edge.a, b=edge.b)
    return msg


def page_from_proto(
    msg: topology_service_pb2.ComputeEdgesResponse, targets: Collection[str] | None = None
) -> EdgePage:
    """With ``targets`` (the identities the request named), edges must join two of them;
    that check replaces validating every identity, which large pages cannot afford."""
    if targets is None:
        edges = tuple(edge_from_proto(e) for e in msg.edges)
    else:
        out = []
        for e in msg.edges:
            a, b = e.a, e.b
            if a not in targets or b not in targets:
                raise InvalidArgument("edges", f"edge {a!r}-{b!r} names an identity not requested")
            out.append(
                ManagedPeerEdge(AgentIdentity(a), AgentIdentity(b))
            )  # refuses a self edge and non-canonical order
        edges = tuple(out)
    return EdgePage(edges, msg.next_page_token, int(msg.total_edges))
