"""Round trips of the topology package's messages (edges, context, pages)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobkit.core.errors import InvalidIdentity, SelfEdge
from mobkit.core.types import DurableAgentSpec, ManagedPeerEdge, TopologyContext
from mobkit.gen.topology.v1 import topology_pb2, topology_service_pb2
from mobkit.testing.strategies import identities as valid_identities
from mobkit.topology.domain import EdgePage
from mobkit.wire import topology as wire

identities = valid_identities(max_size=8, max_codepoint=0x2FF)
edges = (
    st.tuples(identities, identities)
    .filter(lambda p: p[0] != p[1])
    .map(lambda p: ManagedPeerEdge.new(*p))
)


@given(edges)
def test_edge_round_trip(edge: ManagedPeerEdge) -> None:
    msg = topology_pb2.ManagedPeerEdge.FromString(wire.edge_to_proto(edge).SerializeToString())
    assert wire.edge_from_proto(msg) == edge


def test_edge_from_another_client_is_put_in_canonical_order() -> None:
    assert wire.edge_from_proto(topology_pb2.ManagedPeerEdge(a="b", b="a")) == ManagedPeerEdge.new(
        "a", "b"
    )


def test_self_and_invalid_edges_are_refused() -> None:
    with pytest.raises(SelfEdge):
        wire.edge_from_proto(topology_pb2.ManagedPeerEdge(a="x", b="x"))
    with pytest.raises(InvalidIdentity):
        wire.edge_from_proto(topology_pb2.ManagedPeerEdge(a="x", b="a/b"))


@given(st.lists(edges, max_size=5).map(tuple), st.text(max_size=10), st.integers(0, 2**64 - 1))
def test_page_round_trip(page_edges: tuple[ManagedPeerEdge, ...], token: str, total: int) -> None:
    page = EdgePage(page_edges, token, total)
    msg = topology_service_pb2.ComputeEdgesResponse.FromString(
        wire.page_to_proto(page).SerializeToString()
    )
    assert wire.page_from_proto(msg) == page


@given(st.lists(identities, max_size=4, unique=True))
def test_context_round_trip(names: list[str]) -> None:
    context = TopologyContext(
        tuple(DurableAgentSpec(identity=n, profile="p", labels={"team": n[:1]}) for n in names)  # type: ignore[arg-type]
    )
    assert wire.topology_context_from_proto(wire.topology_context_to_proto(context)) == context


def test_page_from_a_server_is_checked_against_the_requested_targets() -> None:
    from mobkit.core.errors import InvalidArgument

    msg = topology_service_pb2.ComputeEdgesResponse(
        edges=[topology_pb2.ManagedPeerEdge(a="a", b="b")], total_edges=1
    )
    assert wire.page_from_proto(msg, targets={"a", "b"}).edges == (ManagedPeerEdge.new("a", "b"),)
    with pytest.raises(InvalidArgument):
        wire.page_from_proto(msg, targets={"a"})
    backwards = topology_service_pb2.ComputeEdgesResponse(
        edges=[topology_pb2.ManagedPeerEdge(a="b", b="a")]
    )
    with pytest.raises(InvalidArgument):
        wire.page_from_proto(backwards, targets={"a", "b"})
    selfish = topology_service_pb2.ComputeEdgesResponse(
        edges=[topology_pb2.ManagedPeerEdge(a="a", b="a")]
    )
    with pytest.raises(SelfEdge):
        wire.page_from_proto(selfish, targets={"a"})
