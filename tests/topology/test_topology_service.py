"""TopologyService on a real gRPC server (port 0), through the client adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mobkit.core.errors import InvalidArgument, InvalidIdentity, SelfEdge, TopologyUnavailable
from mobkit.core.types import DurableAgentSpec, ManagedPeerEdge, TopologyContext
from mobkit.gen.topology.v1 import topology_service_pb2 as pb
from mobkit.gen.topology.v1 import topology_service_pb2_grpc as pb_grpc
from mobkit.server.config import Settings
from mobkit.server.host import start_services
from mobkit.topology.client import GrpcTopologyProvider
from mobkit.topology.domain import iter_edges

TEAM = TopologyContext(
    (
        DurableAgentSpec(identity="coordinator", profile="coordinator", labels={"team": "alpha"}),  # type: ignore[arg-type]
        DurableAgentSpec(identity="worker-1", profile="worker", labels={"team": "alpha"}),  # type: ignore[arg-type]
        DurableAgentSpec(identity="worker-2", profile="worker", labels={"team": "beta"}),  # type: ignore[arg-type]
        DurableAgentSpec(identity="worker-3", profile="worker", labels={"team": "beta"}),  # type: ignore[arg-type]
    )
)
TARGETS = ["worker-3", "worker-1", "coordinator", "worker-2"]


@asynccontextmanager
async def serving(section: dict[str, Any] | None) -> AsyncIterator[grpc.aio.Channel]:
    sections = {} if section is None else {"topology": section}
    server, resources = await start_services(
        ["topology"], Settings(listen="127.0.0.1:0", sections=sections)
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(0)
        await resources.close()


def reason(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)
    assert status is not None
    (detail,) = status.details
    info = error_details_pb2.ErrorInfo()
    assert detail.Unpack(info) and info.domain == "mobkit.dev"
    return str(info.reason)


def pairs(edges: list[ManagedPeerEdge]) -> list[tuple[str, str]]:
    return [(e.a, e.b) for e in edges]


async def test_default_is_a_full_mesh() -> None:
    async with serving(None) as channel:
        edges = await GrpcTopologyProvider(channel).compute_edges(TARGETS, TEAM)
    assert len(edges) == 6 and pairs(edges) == sorted(pairs(edges))


async def test_hub_plus_label_groups() -> None:
    async with serving({"hubs": ["coordinator"], "label_keys": ["team"]}) as channel:
        client = GrpcTopologyProvider(channel)
        edges = await client.compute_edges(TARGETS, TEAM)
        assert pairs(edges) == [
            ("coordinator", "worker-1"),
            ("coordinator", "worker-2"),
            ("coordinator", "worker-3"),
            ("worker-2", "worker-3"),
        ]
        paged = [e async for e in iter_edges(client, TARGETS, TEAM, page_size=1)]
        assert paged == edges


async def test_self_edge_in_configuration_is_self_edge() -> None:
    async with serving({"explicit": [["worker-1", "worker-1"]]}) as channel:
        stub = pb_grpc.TopologyServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ComputeEdges(
                pb.ComputeEdgesRequest(target_identities=["worker-1"]), timeout=10
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason(info.value) == "SELF_EDGE"
        with pytest.raises(SelfEdge) as err:
            await GrpcTopologyProvider(channel).compute_edges(TARGETS, TEAM)
        assert err.value.identity == "worker-1"


async def test_bad_requests_are_invalid_argument() -> None:
    async with serving(None) as channel:
        client = GrpcTopologyProvider(channel)
        with pytest.raises(InvalidArgument) as info:
            await client.compute_edges(["a", "a"], TopologyContext())
        assert info.value.field == "target_identities"
        with pytest.raises(InvalidIdentity):
            await client.compute_edges(["a", "b/c"], TopologyContext())
        with pytest.raises(InvalidArgument) as info:
            await client.compute_edges_page(["a", "b"], TopologyContext(), page_size=-5)
        assert info.value.field == "page_size"
        first = await client.compute_edges_page(TARGETS, TEAM, page_size=2)
        with pytest.raises(InvalidArgument) as info:
            await client.compute_edges_page(TARGETS[:3], TEAM, 2, first.next_page_token)
        assert info.value.field == "page_token"


async def test_unreachable_topology_service_is_backend_unavailable() -> None:
    from mobkit.etcd.process import free_ports

    (port,) = free_ports(1)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(TopologyUnavailable):
            await GrpcTopologyProvider(channel, timeout=2).compute_edges(
                ["a", "b"], TopologyContext()
            )


async def test_bad_configuration_fails_the_start() -> None:
    with pytest.raises(InvalidArgument):
        await start_services(
            ["topology"],
            Settings(listen="127.0.0.1:0", sections={"topology": {"policies": "star"}}),
        )
