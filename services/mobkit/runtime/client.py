"""gRPC client adapter: an :class:`~mobkit.runtime.domain.AgentRuntime` over the
AgentRuntimeService, raising the same domain exceptions as the in-process runtime.

A turn with callbacks (``peer_sender``, ``tool_caller``) or a ``progress`` sink runs
over ``RunTurnStream`` (:mod:`mobkit.runtime.stream_client`): the agent's peer
messages and tool calls come back here and are answered with them, with the same
results and errors as in-process. A turn with none of them uses the unary
``RunTurn``, where an agent that calls back fails with CALLBACK_UNAVAILABLE, as it
does in-process without callbacks.
"""

from __future__ import annotations

import grpc

from mobkit.core.types import AgentBuildDraft, DispatchInput, SessionSnapshot
from mobkit.gen.runtime.v1 import runtime_service_pb2 as pb
from mobkit.gen.runtime.v1 import runtime_service_pb2_grpc as pb_grpc
from mobkit.runtime.domain import (
    CallbackUnavailable,
    ModelFailed,
    ModelUnavailable,
    SessionClosed,
    SessionInfo,
    SessionNotFound,
    TurnOutcome,
)
from mobkit.runtime.sdk import PeerSender, ProgressSink, ToolCaller
from mobkit.runtime.stream_client import run_turn_stream
from mobkit.wire import runtime as wire
from mobkit.wire.calls import Calls, decoder
from mobkit.wire.modules import ERRORS as MODULE_ERRORS

# Errors defined by the runtime itself, beyond the shared ones wire.errors knows; and
# the module errors a turn fails with when its tool call did.
_SPECIFIC = (
    SessionNotFound,
    SessionClosed,
    CallbackUnavailable,
    ModelUnavailable,
    ModelFailed,
    *MODULE_ERRORS,
)


class GrpcAgentRuntime:
    """Calls a remote AgentRuntimeService. ``timeout`` bounds each call (seconds), but
    a turn over RunTurnStream, which ``turn_timeout`` bounds: its peer messages and
    tool calls (each bounded on its own) run inside it. ``retries`` repeats
    ExportSnapshot on UNAVAILABLE (:mod:`mobkit.wire.calls`): the other calls change a
    session."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout: float | None = 30.0,
        turn_timeout: float | None = 120.0,
        retries: int = 0,
    ) -> None:
        self._stub = pb_grpc.AgentRuntimeServiceStub(channel)
        self._call = Calls(decoder(*_SPECIFIC), timeout=timeout, retries=retries)
        self._turn_timeout = turn_timeout

    async def create_session(
        self,
        identity: str,
        profile: str,
        draft: AgentBuildDraft,
        *,
        session_id: str | None = None,
        agent_runtime_id: str | None = None,
    ) -> SessionInfo:
        request = wire.create_request_to_proto(
            wire.CreateSessionCall(
                identity, profile, draft, session_id=session_id, agent_runtime_id=agent_runtime_id
            )
        )
        reply = await self._call(self._stub.CreateSession, request)
        return wire.create_response_from_proto(reply)

    async def resume_session(
        self,
        identity: str,
        profile: str,
        session_id: str,
        agent_runtime_id: str,
        snapshot: SessionSnapshot,
        draft: AgentBuildDraft,
    ) -> SessionInfo:
        request = wire.resume_request_to_proto(
            wire.ResumeSessionCall(
                identity, session_id, agent_runtime_id, snapshot, draft, profile=profile
            )
        )
        reply = await self._call(self._stub.ResumeSession, request)
        return wire.resume_response_from_proto(reply)

    async def run_turn(
        self,
        session_id: str,
        message: DispatchInput,
        *,
        peers: tuple[str, ...] = (),
        peer_sender: PeerSender | None = None,
        tool_caller: ToolCaller | None = None,
        progress: ProgressSink | None = None,
    ) -> TurnOutcome:
        call = wire.RunTurnCall(session_id, message, peers)
        if peer_sender is not None or tool_caller is not None or progress is not None:
            return await run_turn_stream(
                self._stub,
                call,
                peer_sender=peer_sender,
                tool_caller=tool_caller,
                progress=progress,
                timeout=self._turn_timeout,
                errors=_SPECIFIC,
            )
        reply = await self._call(self._stub.RunTurn, wire.run_turn_request_to_proto(call))
        return wire.turn_outcome_from_proto(reply)

    async def export_snapshot(self, session_id: str) -> SessionSnapshot:
        request = pb.ExportSnapshotRequest(session_id=session_id)
        reply = await self._call(self._stub.ExportSnapshot, request, idempotent=True)
        return wire.snapshot_from_proto(reply.snapshot)

    async def close_session(self, session_id: str) -> None:
        await self._call(self._stub.CloseSession, pb.CloseSessionRequest(session_id=session_id))
