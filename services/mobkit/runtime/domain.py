"""The agent runtime port: the seam between the orchestrator and whatever runs agents."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable

from mobkit.core.error_registry import REGISTRY
from mobkit.core.errors import Metadata, MobKitError
from mobkit.core.types import AgentBuildDraft, DispatchInput, SessionSnapshot, TokenUsage
from mobkit.runtime.sdk import PeerSender, ProgressSink, ToolCaller


@REGISTRY.specific
class SessionNotFound(MobKitError):
    reason = "SESSION_NOT_FOUND"
    grpc_code = "NOT_FOUND"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"no open session {session_id!r} in this runtime", session_id=session_id)
        self.session_id = session_id

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["session_id"])


@REGISTRY.specific
class SessionClosed(MobKitError):
    """The session's teardown gate is closed: a stale handle failed closed."""

    reason = "SESSION_CLOSED"
    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} was torn down", session_id=session_id)
        self.session_id = session_id

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["session_id"])


@REGISTRY.specific
class CallbackUnavailable(MobKitError):
    """An agent asked for a callback (peer message, tool call) its host cannot provide.

    A turn run without the callback (the unary RunTurn of v1 callers, which carries
    no way back to the orchestrator) fails with this error (UNAVAILABLE) when its
    agent messages a peer or calls a tool, and its state is unchanged. Turns over
    RunTurnStream carry their callbacks.
    """

    reason = "CALLBACK_UNAVAILABLE"
    grpc_code = "UNAVAILABLE"

    def __init__(self, session_id: str, callback: str) -> None:
        super().__init__(
            f"session {session_id!r}: {callback} cannot reach the orchestrator: this turn "
            "has no way back to it (the unary RunTurn carries none; RunTurnStream does)",
            session_id=session_id,
            callback=callback,
        )
        self.session_id = session_id
        self.callback = callback

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["session_id"], metadata["callback"])


class _ModelError(MobKitError):
    """An ``llm`` agent's model endpoint ended the turn; ``verb`` says how."""

    verb = "failed"

    def __init__(self, model: str, detail: str) -> None:
        super().__init__(f"model {model!r} {self.verb}: {detail}", model=model, detail=detail)
        self.model = model
        self.detail = detail

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["model"], metadata["detail"])


@REGISTRY.specific
class ModelUnavailable(_ModelError):
    """The model could not answer within the turn: unreachable, too slow (its
    timeout), or still rate-limited (429) or failing (5xx) after its retries. The
    turn failed and its state is unchanged; the same message may be sent again."""

    reason = "MODEL_UNAVAILABLE"
    grpc_code = "UNAVAILABLE"
    verb = "unavailable"


@REGISTRY.specific
class ModelFailed(_ModelError):
    """The model's endpoint refused the request (a 4xx other than 429: a wrong key, an
    unknown model, a request it cannot take) or answered what the turn cannot use
    (tool calls past the turn's bound). Sending the same message again fails again."""

    reason = "MODEL_FAILED"
    grpc_code = "FAILED_PRECONDITION"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    session_id: str
    agent_runtime_id: str
    turns: int = 0


@dataclass(frozen=True, slots=True)
class TurnOutcome:
    output: str
    turn: int
    structured_output: Any = None
    usage: TokenUsage | None = None


@runtime_checkable
class AgentRuntime(Protocol):
    """Creates, resumes and runs sessions. Implementations: in-process and gRPC."""

    async def create_session(
        self,
        identity: str,
        profile: str,
        draft: AgentBuildDraft,
        *,
        session_id: str | None = None,
        agent_runtime_id: str | None = None,
    ) -> SessionInfo: ...

    async def resume_session(
        self,
        identity: str,
        profile: str,
        session_id: str,
        agent_runtime_id: str,
        snapshot: SessionSnapshot,
        draft: AgentBuildDraft,
    ) -> SessionInfo: ...

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
        """Run one turn. The agent's peer messages go to ``peer_sender`` and its tool
        calls to ``tool_caller`` (absent: CALLBACK_UNAVAILABLE); what it reports while
        it runs goes to ``progress``. A failed turn leaves the state unchanged."""
        ...

    async def export_snapshot(self, session_id: str) -> SessionSnapshot: ...

    async def close_session(self, session_id: str) -> None: ...
