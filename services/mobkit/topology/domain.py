"""The topology provider's port (CONTRACT-05) and its page type. No gRPC here.

Edges are canonical (``a < b``, byte-wise — Python's code-point order on str is
the same as UTF-8 byte order), deduplicated, and sorted by ``(a, b)``. A full
mesh over 2,000 identities is about 2M edges, so the answer comes in pages
(:meth:`TopologyProvider.compute_edges_page`); a page token is stateless: it
names the last edge served and a fingerprint of the request it belongs to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mobkit.core.types import ManagedPeerEdge, TopologyContext

DEFAULT_PAGE_SIZE = 10_000
MAX_PAGE_SIZE = 50_000


@dataclass(frozen=True, slots=True)
class EdgePage:
    """One page of edges; ``next_page_token`` is empty on the last page."""

    edges: tuple[ManagedPeerEdge, ...]
    next_page_token: str
    total_edges: int


@runtime_checkable
class TopologyProvider(Protocol):
    """Computes the managed peer edges for the identities active after a cycle."""

    async def compute_edges(
        self, target_identities: Sequence[str], context: TopologyContext
    ) -> list[ManagedPeerEdge]:
        """Every edge at once (the seed's call): fine for small meshes; large ones page."""
        ...

    async def compute_edges_page(
        self,
        target_identities: Sequence[str],
        context: TopologyContext,
        page_size: int = 0,
        page_token: str = "",
    ) -> EdgePage:
        """One page: ``page_size`` 0 means 10,000, above 50,000 means 50,000."""
        ...


async def iter_edges(
    provider: TopologyProvider,
    target_identities: Sequence[str],
    context: TopologyContext,
    page_size: int = 0,
) -> AsyncIterator[ManagedPeerEdge]:
    """Every edge, one page in memory at a time, from any provider (local or remote)."""
    token = ""
    while True:
        page = await provider.compute_edges_page(target_identities, context, page_size, token)
        for edge in page.edges:
            yield edge
        token = page.next_page_token
        if not token:
            return
