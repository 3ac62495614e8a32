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
from typing import Any, ClassVar

from mobkit.core.types import AgentBuildDraft, ExternalToolDef, JsonValue
from mobkit.runtime.progress import ProgressSink, TextDelta

PeerSender = Callable[[str, str], Awaitable[str]]
ToolCaller = Callable[[str, dict[str, Any]], Awaitable[Any]]


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
    _send_to_peer: PeerSender | None = field(default=None, repr=False)
    _call_tool: ToolCaller | None = field(default=None, repr=False)
    _progress: ProgressSink | None = field(default=None, repr=False)

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

    def emit_delta(self, text: str) -> None:
        """Report a piece of the reply as it is produced (a streaming client sees it
        at once); the turn's output is still what ``on_turn`` returns."""
        if self._progress is not None and text:
            self._progress(TextDelta(text))


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
