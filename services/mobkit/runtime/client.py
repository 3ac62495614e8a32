"""gRPC client adapter: an :class:`~mobkit.runtime.domain.AgentRuntime` over the
AgentRuntimeService, raising the same domain exceptions as the in-process runtime.

Limits of the remote seam (the protos carry data, not callbacks):

* ``peer_sender`` and ``tool_caller`` stay in this process and are never called: an
  agent that messages a peer (or calls a tool) during a remote turn fails the turn
  with :class:`~mobkit.runtime.domain.CallbackUnavailable` (reason
  CALLBACK_UNAVAILABLE), or ``TopologyViolation`` if the target is not a peer. Host
  agents that talk to peers in the orchestrator's process.
* until the protos carry them (see :mod:`mobkit.wire.runtime`), ``agent_runtime_id``
  on create is not sent (the runtime mints one: use the returned ``SessionInfo``),
  and :class:`~mobkit.runtime.domain.TurnOutcome` ``turn`` and ``SessionInfo.turns``
  read 0.
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
from mobkit.runtime.sdk import PeerSender, ToolCaller
from mobkit.wire import runtime as wire
from mobkit.wire.calls import Calls, decoder

# Errors defined by the runtime itself, beyond the shared ones wire.errors knows.
_SPECIFIC = (SessionNotFound, SessionClosed, CallbackUnavailable, ModelUnavailable, ModelFailed)


class GrpcAgentRuntime:
    """Calls a remote AgentRuntimeService. ``timeout`` bounds each call (seconds);
    ``retries`` repeats ExportSnapshot on UNAVAILABLE (:mod:`mobkit.wire.calls`): the
    other calls change a session."""

    def __init__(
        self, channel: grpc.aio.Channel, *, timeout: float | None = 30.0, retries: int = 0
    ) -> None:
        self._stub = pb_grpc.AgentRuntimeServiceStub(channel)
        self._call = Calls(decoder(*_SPECIFIC), timeout=timeout, retries=retries)

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
    ) -> TurnOutcome:
        # peer_sender / tool_caller cannot cross the wire: see the module docstring.
        request = wire.run_turn_request_to_proto(wire.RunTurnCall(session_id, message, peers))
        reply = await self._call(self._stub.RunTurn, request)
        return wire.turn_outcome_from_proto(reply)

    async def export_snapshot(self, session_id: str) -> SessionSnapshot:
        request = pb.ExportSnapshotRequest(session_id=session_id)
        reply = await self._call(self._stub.ExportSnapshot, request, idempotent=True)
        return wire.snapshot_from_proto(reply.snapshot)

    async def close_session(self, session_id: str) -> None:
        await self._call(self._stub.CloseSession, pb.CloseSessionRequest(session_id=session_id))
