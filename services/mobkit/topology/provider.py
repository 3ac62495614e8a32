"""The configured topology provider: policies from config, edges computed per request."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

from mobkit.core import page_token as core_page_token
from mobkit.core.types import ManagedPeerEdge, TopologyContext
from mobkit.topology import page_token as tokens
from mobkit.topology.domain import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, EdgePage
from mobkit.topology.edges import EdgeSet
from mobkit.topology.policy import TopologyPolicy


def effective_page_size(page_size: int) -> int:
    return core_page_token.page_size(page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


class PolicyTopology:
    """A :class:`~mobkit.topology.domain.TopologyProvider` over a :class:`TopologyPolicy`.

    Stateless: every page recomputes the row structure (cheap, see ``edges``) and
    resumes after the edge its token names, so any replica can serve any page.
    """

    def __init__(self, policy: TopologyPolicy | None = None) -> None:
        self.policy = policy or TopologyPolicy(full_mesh=True)

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> PolicyTopology:
        return cls(TopologyPolicy.from_config(section))

    def edge_set(
        self, target_identities: Sequence[str], context: TopologyContext, *, warn: bool = True
    ) -> EdgeSet:
        return EdgeSet(self.policy, target_identities, context, warn=warn)

    def iter_edges(
        self, target_identities: Sequence[str], context: TopologyContext
    ) -> Iterator[ManagedPeerEdge]:
        """Every edge lazily, in order (for in-process callers that stream)."""
        return iter(self.edge_set(target_identities, context))

    async def compute_edges(
        self, target_identities: Sequence[str], context: TopologyContext
    ) -> list[ManagedPeerEdge]:
        return list(self.edge_set(target_identities, context))

    async def compute_edges_page(
        self,
        target_identities: Sequence[str],
        context: TopologyContext,
        page_size: int = 0,
        page_token: str = "",
    ) -> EdgePage:
        size = effective_page_size(page_size)
        # Warn about dropped explicit pairs once per listing, not once per page.
        edges = self.edge_set(target_identities, context, warn=not page_token)
        after = None
        if page_token:
            after = edges.position(*tokens.decode(page_token, edges.fingerprint))
        pairs = edges.pairs(after)
        page = [edges.edge(i, j) for i, j in islice(pairs, size)]
        more = bool(page) and next(pairs, None) is not None
        token = tokens.encode(edges.fingerprint, page[-1].a, page[-1].b) if more else ""
        return EdgePage(tuple(page), token, len(edges))
