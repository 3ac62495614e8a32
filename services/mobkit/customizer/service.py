"""``mobkit serve customizer``: the ``[customizer]`` rules behind the AgentCustomizerService.

An orchestrator given ``--customizer-addr`` calls that service instead
(:class:`~mobkit.customizer.client.GrpcAgentCustomizer`), whatever it runs.
"""

from __future__ import annotations

from mobkit.customizer.rules import DeclarativeCustomizer
from mobkit.customizer.servicer import ERRORS, SERVICE_NAME, CustomizerServicer
from mobkit.gen.customizer.v1 import customizer_service_pb2_grpc as pb_grpc
from mobkit.server.app import ServiceRegistration
from mobkit.server.config import Settings
from mobkit.server.resources import Resources


async def build(settings: Settings, resources: Resources) -> ServiceRegistration:
    customizer = DeclarativeCustomizer.from_config(settings.sections.get("customizer"))
    resources.providers["customizer"] = customizer  # the in-process orchestrator uses it
    servicer = CustomizerServicer(customizer)
    return ServiceRegistration(
        SERVICE_NAME,
        lambda server: pb_grpc.add_AgentCustomizerServiceServicer_to_server(servicer, server),
        ERRORS,
    )
