"""gRPC surface of an :class:`~mobkit.runtime.domain.AgentRuntime`: convert, call, convert.

``RunTurnStream`` runs a turn whose peer messages and tool calls go back to the
orchestrator over the same stream (:mod:`mobkit.runtime.stream_host`). The unary
``RunTurn`` (v1 callers) runs without callbacks: an agent that messages a peer or
calls a tool there fails its turn with CALLBACK_UNAVAILABLE (UNAVAILABLE;
TOPOLOGY_VIOLATION first when the target is not one of the turn's peers) and its
state is left as the last turn left it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from mobkit.core import errors as e
from mobkit.core.errors import InvalidArgument, StoreCorruption, TopologyViolation
from mobkit.gen.runtime.v1 import runtime_service_pb2 as pb
from mobkit.gen.runtime.v1 import runtime_service_pb2_grpc as pb_grpc
from mobkit.runtime.domain import (
    AgentRuntime,
    CallbackUnavailable,
    ModelFailed,
    ModelUnavailable,
    SessionClosed,
    SessionNotFound,
)
from mobkit.runtime.stream_host import CALLBACK_ERRORS, serve_turn
from mobkit.server.errors import service_errors
from mobkit.wire import runtime as wire

SERVICE_NAME = "mobkit.runtime.v1.AgentRuntimeService"

ERRORS: dict[type[BaseException], grpc.StatusCode] = service_errors(
    SessionNotFound,
    SessionClosed,
    StoreCorruption,
    TopologyViolation,
    CallbackUnavailable,
    ModelUnavailable,
    ModelFailed,
    # What an agent's callback may fail with and the turn then fails with, unchanged.
    *CALLBACK_ERRORS,
    e.NotActive,
    e.IdentityNotFound,
)


class AgentRuntimeServicer(pb_grpc.AgentRuntimeServiceServicer):
    def __init__(self, runtime: AgentRuntime) -> None:
        self._runtime = runtime

    async def CreateSession(
        self, request: pb.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateSessionResponse:
        call = wire.create_request_from_proto(request)
        info = await self._runtime.create_session(
            call.identity,
            call.profile,
            call.draft,
            session_id=call.session_id,
            agent_runtime_id=call.agent_runtime_id,
        )
        return wire.create_response_to_proto(info)

    async def ResumeSession(
        self, request: pb.ResumeSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResumeSessionResponse:
        call = wire.resume_request_from_proto(request)
        info = await self._runtime.resume_session(
            call.identity,
            call.profile,
            call.session_id,
            call.agent_runtime_id,
            call.snapshot,
            call.draft,
        )
        return wire.resume_response_to_proto(info)

    async def RunTurn(
        self, request: pb.RunTurnRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunTurnResponse:
        call = wire.run_turn_request_from_proto(request)
        outcome = await self._runtime.run_turn(call.session_id, call.message, peers=call.peers)
        return wire.turn_outcome_to_proto(outcome)

    async def RunTurnStream(
        self,
        request_iterator: AsyncIterator[pb.RunTurnStreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.RunTurnStreamResponse]:
        async for msg in serve_turn(self._runtime, request_iterator):
            yield msg

    async def ExportSnapshot(
        self, request: pb.ExportSnapshotRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExportSnapshotResponse:
        if not request.session_id:
            raise InvalidArgument("session_id", "must not be empty")
        snapshot = await self._runtime.export_snapshot(request.session_id)
        return pb.ExportSnapshotResponse(snapshot=wire.snapshot_to_proto(snapshot))

    async def CloseSession(
        self, request: pb.CloseSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CloseSessionResponse:
        if not request.session_id:
            raise InvalidArgument("session_id", "must not be empty")
        await self._runtime.close_session(request.session_id)
        return pb.CloseSessionResponse()
