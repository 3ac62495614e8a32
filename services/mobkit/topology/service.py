"""``mobkit serve topology``: the ``[topology]`` policy behind the TopologyService."""

from __future__ import annotations

import logging

from mobkit.gen.topology.v1 import topology_service_pb2_grpc as pb_grpc
from mobkit.server.app import ServiceRegistration
from mobkit.server.config import Settings
from mobkit.server.resources import Resources
from mobkit.topology.provider import PolicyTopology
from mobkit.topology.servicer import ERRORS, SERVICE_NAME, TopologyServicer

log = logging.getLogger("mobkit.topology")


async def build(settings: Settings, resources: Resources) -> ServiceRegistration:
    provider = PolicyTopology.from_config(settings.sections.get("topology"))
    if provider.policy.self_edges:
        log.warning(
            "topology.explicit links %s to itself: ComputeEdges will answer SELF_EDGE",
            provider.policy.self_edges[0],
        )
    resources.providers["topology"] = provider  # the in-process orchestrator uses it directly
    servicer = TopologyServicer(provider)
    return ServiceRegistration(
        SERVICE_NAME,
        lambda server: pb_grpc.add_TopologyServiceServicer_to_server(servicer, server),
        ERRORS,
    )
