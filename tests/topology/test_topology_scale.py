"""Full mesh over 2,000 identities (1,999,000 edges): paged, never materialised.

The answer is paged (at most 50,000 edges per ComputeEdges call) and each page is
computed from the request alone, so memory is one page whatever the mesh size.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator

import grpc
import pytest

from mobkit.core.types import TopologyContext
from mobkit.server.config import Settings
from mobkit.server.host import start_services
from mobkit.topology.client import GrpcTopologyProvider
from mobkit.topology.domain import MAX_PAGE_SIZE, TopologyProvider
from mobkit.topology.provider import PolicyTopology

N = 2000
TOTAL = N * (N - 1) // 2
TARGETS = [f"agent-{i:04d}" for i in range(N)]


async def walk(provider: TopologyProvider) -> tuple[int, int]:
    """Count every edge page by page; returns (edges, pages). Order within a page is
    the property tests' business; here each page must continue after the previous one."""
    token, count, pages, last = "", 0, 0, ("", "")
    while True:
        page = await provider.compute_edges_page(TARGETS, TopologyContext(), MAX_PAGE_SIZE, token)
        assert page.total_edges == TOTAL
        first = page.edges[0]
        assert (first.a, first.b) > last
        last = (page.edges[-1].a, page.edges[-1].b)
        count += len(page.edges)
        pages += 1
        token = page.next_page_token
        if not token:
            return count, pages


async def test_full_mesh_of_2000_pages_without_materialising_the_mesh() -> None:
    provider = PolicyTopology()
    tracemalloc.start()
    try:
        token = ""
        for _ in range(2):  # a provider that built every edge would do it on the first page
            page = await provider.compute_edges_page(
                TARGETS, TopologyContext(), MAX_PAGE_SIZE, token
            )
            token = page.next_page_token
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert page.total_edges == TOTAL and len(page.edges) == MAX_PAGE_SIZE and token
    # A page of 50,000 edges is a few MiB; 2M edges as objects would be well over 200 MiB.
    assert peak < 40 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


@pytest.fixture
async def topology_channel() -> AsyncIterator[grpc.aio.Channel]:
    server, resources = await start_services(["topology"], Settings(listen="127.0.0.1:0"))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(0)
        await resources.close()


@pytest.mark.slow
async def test_full_mesh_of_2000_over_grpc_pages(topology_channel: grpc.aio.Channel) -> None:
    count, pages = await walk(GrpcTopologyProvider(topology_channel, timeout=60))
    assert (count, pages) == (TOTAL, 40)
