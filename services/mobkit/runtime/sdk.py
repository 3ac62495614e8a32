"""A small SDK for writing agents the reference runtime can host.

An agent is a class with a turn handler. Its ``state`` must stay
JSON-serialisable: the runtime snapshots it after every turn and restores it on
resume, so whatever the agent keeps there survives crashes and failovers.

    class Greeter(Agent):
        kind = "greeter"

        async def on_turn(self, ctx: TurnContext, message: str) -> str:
            self.state["greeted"] = self.state.get("greeted", 0) + 1
            return f"hello #{self.state['greeted']}, {message}"
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from mobkit.core.types import AgentBuildDraft, ExternalToolDef, JsonValue, TokenUsage

PeerSender = Callable[[str, str], Awaitable[str]]
ToolCaller = Callable[[str, dict[str, Any]], Awaitable[Any]]


ProgressKind = Literal["delta", "tool_call_started", "tool_call_finished"]


@dataclass(frozen=True, slots=True)
class TurnProgress:
    """Something a turn did before it finished: a piece of its reply (``delta``), or a
    tool call starting or ending (``tool_call_started`` / ``tool_call_finished``, ``text``
    naming the tool)."""

    kind: ProgressKind
    text: str


ProgressSink = Callable[[TurnProgress], Awaitable[None]]


@dataclass
class TurnContext:
    """What an agent sees during one turn."""

    identity: str
    session_id: str
    turn: int
    draft: AgentBuildDraft
    peers: tuple[str, ...] = ()
    origin: str = "system"
    correlation_id: str | None = None
    structured_output: JsonValue | None = None
    """Set by the agent to give the turn a structured output (any JSON value), which
    the receipt carries beside the text reply."""
    usage: TokenUsage | None = None
    """Set by an agent that calls a model: the tokens this turn used, for the receipt
    and the metrics."""
    _send_to_peer: PeerSender | None = field(default=None, repr=False)
    _call_tool: ToolCaller | None = field(default=None, repr=False)
    _progress: ProgressSink | None = field(default=None, repr=False)

    async def emit_delta(self, text: str) -> None:
        """Report a piece of the reply as it is produced (a streamed turn shows it at
        once); nothing happens when no one listens."""
        if self._progress is not None and text:
            await self._progress(TurnProgress("delta", text))

    async def emit_tool_call(self, name: str, *, finished: bool) -> None:
        """Report a tool call (or a peer message) starting, or finishing."""
        if self._progress is not None:
            kind: ProgressKind = "tool_call_finished" if finished else "tool_call_started"
            await self._progress(TurnProgress(kind, name))

    async def send_to_peer(self, peer: str, text: str) -> str:
        """Message a managed peer through the orchestrator; returns the peer's reply.

        Raises ``TopologyViolation`` when there is no managed edge to ``peer``.
        """
        if self._send_to_peer is None:
            raise RuntimeError("peer messaging is not available in this runtime")
        return await self._send_to_peer(peer, text)

    @property
    def tools(self) -> list[ExternalToolDef]:
        return list(self.draft.external_tools)

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        if self._call_tool is None:
            raise RuntimeError("no tools are available in this runtime")
        return await self._call_tool(name, arguments)


class Agent:
    """Base class of hosted agents. Subclasses set ``kind`` and implement ``on_turn``."""

    kind: ClassVar[str] = ""

    def __init__(self, identity: str, draft: AgentBuildDraft, state: dict[str, Any] | None = None):
        self.identity = identity
        self.draft = draft
        self.state: dict[str, Any] = state if state is not None else {}

    async def on_start(self) -> None:
        """Called once when the session is created or resumed."""

    async def on_turn(self, ctx: TurnContext, message: str) -> str:
        raise NotImplementedError


AgentFactory = type[Agent]
