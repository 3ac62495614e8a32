"""What the model may call during a turn: the draft's granted tools and the managed peers.

Each granted tool (a module's ``clock.now``) becomes a function tool; function names
allow only ``[A-Za-z0-9_-]``, so ``clock.now`` is offered as ``clock_now`` and mapped
back here. The managed peers are one function, ``message_peer(peer, text)``, whose
``peer`` is an enum of the turn's peers; it answers the peer's reply.

A call the model got wrong (an unknown function, arguments that are not a JSON
object, a tool refusing them, a peer outside the topology) is answered to the model
as an error it can read and correct. A call that failed for want of a service
(gRPC UNAVAILABLE: a module restarting, a peer between owners) fails the turn, so
it is rolled back and may be sent again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from mobkit.core import jsontext
from mobkit.core.errors import MobKitError
from mobkit.runtime.sdk import TurnContext

PEER_TOOL = "message_peer"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str


def _function_name(name: str, taken: set[str]) -> str:
    base = _UNSAFE.sub("_", name)[:60] or "tool"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}_{n}"
    taken.add(candidate)
    return candidate


class Toolbox:
    """The function tools of one turn and how to run them."""

    def __init__(self, ctx: TurnContext) -> None:
        self._ctx = ctx
        self._targets: dict[str, str] = {}  # function name -> granted tool name
        self.specs: list[dict[str, Any]] = []
        taken = {PEER_TOOL} if ctx.peers else set()
        for tool in ctx.tools:
            function = _function_name(tool.name, taken)
            self._targets[function] = tool.name
            schema = tool.input_schema if isinstance(tool.input_schema, dict) else {}
            self.specs.append(
                _spec(function, tool.description or tool.name, schema or _EMPTY_OBJECT)
            )
        if ctx.peers:
            self.specs.append(_spec(PEER_TOOL, _PEER_HELP, _peer_schema(ctx.peers)))

    async def run(self, call: ToolCall) -> str:
        """The text the model gets back for ``call``."""
        shown = self._targets.get(call.name, call.name)
        await self._ctx.emit_tool_call(shown, finished=False)
        try:
            return await self._run(call)
        except MobKitError as exc:
            if exc.grpc_code == "UNAVAILABLE":
                raise
            return _error(exc.reason, exc.message)
        finally:
            await self._ctx.emit_tool_call(shown, finished=True)

    async def _run(self, call: ToolCall) -> str:
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError as exc:
            return _error("INVALID_ARGUMENT", f"arguments are not JSON: {exc}")
        if not isinstance(arguments, dict):
            return _error("INVALID_ARGUMENT", "arguments must be a JSON object")
        if call.name == PEER_TOOL and self._ctx.peers:
            peer, text = arguments.get("peer"), arguments.get("text")
            if not isinstance(peer, str) or not isinstance(text, str):
                return _error("INVALID_ARGUMENT", "message_peer needs a peer and a text")
            return await self._ctx.send_to_peer(peer, text)
        target = self._targets.get(call.name)
        if target is None:
            return _error("TOOL_NOT_FOUND", f"no function {call.name!r} is offered")
        result = await self._ctx.call_tool(target, arguments)
        return result if isinstance(result, str) else jsontext.encode(result)


_EMPTY_OBJECT: dict[str, Any] = {"type": "object", "properties": {}}
_PEER_HELP = "Send a message to another agent of the team and get its reply."


def _spec(name: str, description: str, parameters: Any) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


def _peer_schema(peers: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "peer": {"type": "string", "enum": list(peers), "description": "who to message"},
            "text": {"type": "string", "description": "the message"},
        },
        "required": ["peer", "text"],
    }


def _error(reason: str, message: str) -> str:
    return json.dumps({"error": reason, "message": message})
