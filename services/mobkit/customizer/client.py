"""gRPC client adapter: an :class:`~mobkit.customizer.domain.AgentCustomizer` over any
AgentCustomizerService — MobKit's own or a user's, in any language — raising the
same domain exceptions as an in-process customizer (CUSTOMIZER_FAILED included)."""

from __future__ import annotations

import grpc

from mobkit.core.errors import CustomizerUnavailable
from mobkit.core.types import AgentBuildContext, AgentBuildDraft, DurableAgentSpec, JsonValue
from mobkit.gen.customizer.v1 import customizer_service_pb2 as pb
from mobkit.gen.customizer.v1 import customizer_service_pb2_grpc as pb_grpc
from mobkit.wire import customizer as wire
from mobkit.wire.calls import Calls, decoder
from mobkit.wire.roster import spec_to_proto


class GrpcAgentCustomizer:
    """Calls a remote AgentCustomizerService. ``timeout`` bounds each call (seconds);
    ``retries`` repeats CustomizeBuild on UNAVAILABLE (:mod:`mobkit.wire.calls`)."""

    def __init__(
        self, channel: grpc.aio.Channel, *, timeout: float | None = 30.0, retries: int = 0
    ) -> None:
        self._stub = pb_grpc.AgentCustomizerServiceStub(channel)
        self._call = Calls(decoder(CustomizerUnavailable), timeout=timeout, retries=retries)

    async def customize_build(
        self, context: AgentBuildContext, spec: DurableAgentSpec, draft: AgentBuildDraft
    ) -> AgentBuildDraft:
        request = pb.CustomizeBuildRequest(
            context=wire.build_context_to_proto(context),
            spec=spec_to_proto(spec),
            draft=wire.draft_to_proto(draft),
        )
        reply = await self._call(self._stub.CustomizeBuild, request, idempotent=True)
        return wire.draft_from_proto(reply.draft)

    async def after_create(
        self, identity: str, session_id: str, context: JsonValue | None = None
    ) -> None:
        request = wire.after_create_request(identity, session_id, context)
        await self._call(self._stub.AfterCreate, request)
