"""Proto <-> domain for the messages of ``AgentRuntimeService.RunTurnStream``: the
runtime's callbacks, the orchestrator's answers, and a turn's progress.

Free-form JSON (tool arguments and results, progress arguments) travels as JSON
text under :mod:`mobkit.core.jsontext`'s rules, so a tool's integers stay integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mobkit.core import jsontext
from mobkit.core.errors import InvalidArgument, MobKitError
from mobkit.gen.orchestrator.v1 import orchestrator_pb2
from mobkit.gen.runtime.v1 import runtime_service_pb2 as pb
from mobkit.runtime.sdk import TurnProgress
from mobkit.wire.errors import error_from_info


@dataclass(frozen=True, slots=True)
class PeerMessageCall:
    to_identity: str
    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


Callback = PeerMessageCall | ToolCall


def _object_text(value: dict[str, Any], field: str) -> str:
    try:
        return jsontext.encode(value)
    except jsontext.NotJson as exc:
        raise InvalidArgument(field, str(exc)) from None


def _object(text: str, field: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = jsontext.decode(text)
    except jsontext.NotJson as exc:
        raise InvalidArgument(field, str(exc)) from None
    if not isinstance(value, dict):
        raise InvalidArgument(field, "must be a JSON object")
    return value


# -- runtime -> orchestrator: callbacks ------------------------------------------------------


def callback_to_proto(call_id: str, call: Callback) -> pb.RunTurnStreamResponse:
    msg = pb.CallbackRequest(call_id=call_id)
    if isinstance(call, PeerMessageCall):
        msg.peer_message.to_identity = call.to_identity
        msg.peer_message.text = call.text
    else:
        msg.tool_call.name = call.name
        msg.tool_call.arguments_json = _object_text(call.arguments, "tool_call.arguments_json")
    return pb.RunTurnStreamResponse(callback=msg)


def callback_from_proto(msg: pb.CallbackRequest) -> Callback:
    if not msg.call_id:
        raise InvalidArgument("callback.call_id", "must not be empty")
    kind = msg.WhichOneof("call")
    if kind == "peer_message":
        return PeerMessageCall(msg.peer_message.to_identity, msg.peer_message.text)
    if kind == "tool_call":
        if not msg.tool_call.name:
            raise InvalidArgument("callback.tool_call.name", "must not be empty")
        return ToolCall(
            msg.tool_call.name,
            _object(msg.tool_call.arguments_json, "callback.tool_call.arguments_json"),
        )
    raise InvalidArgument("callback.call", "names no call")


# -- orchestrator -> runtime: answers ---------------------------------------------------------


def reply_to_proto(call_id: str, call: Callback, value: Any) -> pb.RunTurnStreamRequest:
    """A callback's success: a peer's reply text, or a tool's result (any JSON value)."""
    msg = pb.CallbackResult(call_id=call_id)
    if isinstance(call, PeerMessageCall):
        msg.peer_reply.text = str(value)
    else:
        try:
            msg.tool_result.result_json = jsontext.encode(value)
        except jsontext.NotJson as exc:
            raise InvalidArgument("tool_result.result_json", str(exc)) from None
    return pb.RunTurnStreamRequest(callback_result=msg)


def error_to_proto(call_id: str, exc: MobKitError) -> pb.RunTurnStreamRequest:
    error = pb.CallbackError(reason=exc.reason, message=exc.message, metadata=exc.metadata)
    return pb.RunTurnStreamRequest(callback_result=pb.CallbackResult(call_id=call_id, error=error))


def result_from_proto(msg: pb.CallbackResult, *specific: type[MobKitError]) -> Any:
    """The callback's value, or its error raised as the domain exception (the classes
    in ``specific`` decode their reasons, beside the shared ones)."""
    kind = msg.WhichOneof("result")
    if kind == "peer_reply":
        return msg.peer_reply.text
    if kind == "tool_result":
        try:
            return jsontext.decode(msg.tool_result.result_json)
        except jsontext.NotJson as exc:
            raise InvalidArgument("callback_result.tool_result.result_json", str(exc)) from None
    if kind == "error":
        raise error_from_info(
            msg.error.reason, msg.error.message, msg.error.metadata, *specific
        ) from None
    raise InvalidArgument("callback_result.result", "carries no result")


# -- runtime -> orchestrator: progress --------------------------------------------------------


def turn_progress_to_proto(event: TurnProgress) -> orchestrator_pb2.TurnProgress:
    """One progress event (also what SendStream and DispatchStream stream to clients)."""
    msg = orchestrator_pb2.TurnProgress()
    if event.kind == "delta":
        msg.text_delta.text = event.text
    elif event.kind == "tool_call_started":
        msg.tool_call_started.name = event.text
    else:
        msg.tool_call_finished.name = event.text
    return msg


def progress_to_proto(event: TurnProgress) -> pb.RunTurnStreamResponse:
    return pb.RunTurnStreamResponse(progress=turn_progress_to_proto(event))


def progress_from_proto(msg: orchestrator_pb2.TurnProgress) -> TurnProgress | None:
    """The event, or None for a kind this reader does not know (a newer runtime's)."""
    kind = msg.WhichOneof("event")
    if kind == "text_delta":
        return TurnProgress("delta", msg.text_delta.text)
    if kind == "tool_call_started":
        return TurnProgress("tool_call_started", msg.tool_call_started.name)
    if kind == "tool_call_finished":
        return TurnProgress("tool_call_finished", msg.tool_call_finished.name)
    return None
