"""Full mesh over 2,000 identities (1,999,000 edges): paged, never materialised."""

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


@pytest.mark.slow
async def test_full_mesh_of_2000_in_process_keeps_memory_bounded() -> None:
    tracemalloc.start()
    try:
        count, pages = await walk(PolicyTopology())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (count, pages) == (TOTAL, -(-TOTAL // MAX_PAGE_SIZE))
    # One page of edges is a few MB; all 2M edges as objects would be well over 200 MB.
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
