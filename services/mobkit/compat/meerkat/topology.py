"""``TopologyProviderAdapter``: Meerkat MobKit's ``TopologyProviderProtocol`` over MobKit's
TopologyService (the ``[topology]`` policies: full mesh, hubs, by label, explicit)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from meerkat_mobkit import identity_first_models as sdk_models

from mobkit.compat.meerkat import convert
from mobkit.compat.meerkat.errors import reasons_in_messages
from mobkit.topology.client import GrpcTopologyProvider


class TopologyProviderAdapter:
    """Managed peer edges from a MobKit TopologyService, every page collected."""

    def __init__(self, client: GrpcTopologyProvider) -> None:
        self._client = client

    @classmethod
    def from_channel(
        cls, channel: grpc.aio.Channel, *, timeout: float = 30.0
    ) -> TopologyProviderAdapter:
        return cls(GrpcTopologyProvider(channel, timeout=timeout))

    async def compute_edges(
        self, target_identities: list[str], context: Any
    ) -> list[sdk_models.ManagedPeerEdge]:
        """``context`` is the gateway's ``{"roster": [spec, ...]}`` (JSON or objects)."""
        with reasons_in_messages():
            edges = await self._client.compute_edges(
                list(target_identities), convert.topology_context_from_sdk(context)
            )
            return [convert.edge_to_sdk(edge) for edge in edges]


if TYPE_CHECKING:
    from meerkat_mobkit import identity_first_providers as sdk

    def _conforms(adapter: TopologyProviderAdapter) -> sdk.TopologyProviderProtocol:
        return adapter
