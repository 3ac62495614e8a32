"""gRPC surface of an :class:`~mobkit.customizer.domain.AgentCustomizer`."""

from __future__ import annotations

import grpc

from mobkit.core.errors import CustomizerFailed
from mobkit.core.identity import parse_identity
from mobkit.customizer.domain import AgentCustomizer
from mobkit.gen.customizer.v1 import customizer_service_pb2 as pb
from mobkit.gen.customizer.v1 import customizer_service_pb2_grpc as pb_grpc
from mobkit.server.errors import service_errors
from mobkit.wire import customizer as wire
from mobkit.wire.roster import spec_from_proto

SERVICE_NAME = "mobkit.customizer.v1.AgentCustomizerService"

# CustomizerUnavailable is a BackendUnavailable: UNAVAILABLE through the base entry.
ERRORS: dict[type[BaseException], grpc.StatusCode] = service_errors(CustomizerFailed)


class CustomizerServicer(pb_grpc.AgentCustomizerServiceServicer):
    def __init__(self, customizer: AgentCustomizer) -> None:
        self._customizer = customizer

    async def CustomizeBuild(
        self, request: pb.CustomizeBuildRequest, context: grpc.aio.ServicerContext
    ) -> pb.CustomizeBuildResponse:
        draft = await self._customizer.customize_build(
            wire.build_context_from_proto(request.context),
            spec_from_proto(request.spec),
            wire.draft_from_proto(request.draft),
        )
        return pb.CustomizeBuildResponse(draft=wire.draft_to_proto(draft))

    async def AfterCreate(
        self, request: pb.AfterCreateRequest, context: grpc.aio.ServicerContext
    ) -> pb.AfterCreateResponse:
        await self._customizer.after_create(
            parse_identity(request.identity),
            request.session_id,
            wire.after_create_context(request),
        )
        return pb.AfterCreateResponse()
