"""The runtime's side of ``RunTurnStream``: one turn whose callbacks cross the stream.

The turn runs in its own task with callbacks that send a ``CallbackRequest`` and wait
for the ``CallbackResult`` of the same call id, so an agent may have several calls
outstanding. One reader task matches answers to calls; everything the runtime sends
(callbacks, progress, the output) goes through one queue, in the order it happened.
If the stream breaks, the turn is cancelled, and the runtime rolls its state back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

from mobkit.core.errors import InvalidArgument, MobKitError
from mobkit.gen.runtime.v1 import runtime_service_pb2 as pb
from mobkit.runtime.domain import AgentRuntime, CallbackUnavailable, SessionClosed, SessionNotFound
from mobkit.runtime.sdk import TurnProgress
from mobkit.wire import runtime as wire
from mobkit.wire import runtime_stream as stream
from mobkit.wire.modules import ERRORS as MODULE_ERRORS

CALLBACK_ERRORS: tuple[type[MobKitError], ...] = (
    *MODULE_ERRORS,
    CallbackUnavailable,
    SessionNotFound,
    SessionClosed,
)
"""The service-specific reasons a callback's error decodes to (beside the shared ones:
TOPOLOGY_VIOLATION, NOT_ACTIVE, ...)."""

Outbox = Callable[[pb.RunTurnStreamResponse | None], None]


class CallbackBridge:
    """A turn's ``peer_sender`` and ``tool_caller`` over the stream."""

    def __init__(self, session_id: str, send: Outbox) -> None:
        self._session_id = session_id
        self._send = send
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[pb.CallbackResult]] = {}
        self._closed = False

    async def send_to_peer(self, peer: str, text: str) -> str:
        return str(await self._call(stream.PeerMessageCall(peer, text), "a peer message"))

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        return await self._call(stream.ToolCall(name, dict(arguments)), "a tool call")

    async def _call(self, call: stream.Callback, what: str) -> Any:
        if self._closed:
            raise CallbackUnavailable(self._session_id, what)
        call_id = str(next(self._ids))
        answer: asyncio.Future[pb.CallbackResult] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = answer
        try:
            self._send(stream.callback_to_proto(call_id, call))
            result = await answer
        finally:
            self._pending.pop(call_id, None)
        return stream.result_from_proto(result, *CALLBACK_ERRORS)

    def answer(self, result: pb.CallbackResult) -> None:
        waiting = self._pending.get(result.call_id)
        if waiting is None or waiting.done():
            raise InvalidArgument(
                "callback_result.call_id", f"no outstanding call {result.call_id!r}"
            )
        waiting.set_result(result)

    def close(self) -> None:
        """The orchestrator stopped answering: outstanding and later calls fail."""
        self._closed = True
        for call_id, waiting in self._pending.items():
            if not waiting.done():
                waiting.set_exception(CallbackUnavailable(self._session_id, f"callback {call_id}"))

    async def read_answers(self, requests: AsyncIterator[pb.RunTurnStreamRequest]) -> None:
        try:
            async for msg in requests:
                kind = msg.WhichOneof("message")
                if kind == "callback_result":
                    self.answer(msg.callback_result)
                elif kind == "start":
                    raise InvalidArgument("start", "sent twice in one RunTurnStream")
                # Anything else is a newer orchestrator's: ignored.
        finally:
            self.close()


async def serve_turn(
    runtime: AgentRuntime, requests: AsyncIterator[pb.RunTurnStreamRequest]
) -> AsyncIterator[pb.RunTurnStreamResponse]:
    """Run the turn the stream's first message names; yields what goes back."""
    first = await anext(aiter(requests), None)
    if first is None or first.WhichOneof("message") != "start":
        raise InvalidArgument("start", "the first message of RunTurnStream must be start")
    call = wire.run_turn_request_from_proto(first.start)
    outbox: asyncio.Queue[pb.RunTurnStreamResponse | None] = asyncio.Queue()
    bridge = CallbackBridge(call.session_id, outbox.put_nowait)

    async def report(event: TurnProgress) -> None:
        outbox.put_nowait(stream.progress_to_proto(event))

    turn = asyncio.create_task(
        runtime.run_turn(
            call.session_id,
            call.message,
            peers=call.peers,
            peer_sender=bridge.send_to_peer,
            tool_caller=bridge.call_tool,
            progress=report,
        )
    )
    turn.add_done_callback(lambda _: outbox.put_nowait(None))
    reader = asyncio.create_task(bridge.read_answers(requests))
    # A protocol error of the orchestrator's ends the turn (its state rolled back).
    reader.add_done_callback(lambda r: r.cancelled() or r.exception() is None or turn.cancel())
    try:
        while (msg := await outbox.get()) is not None:
            yield msg
        refused = reader.exception() if reader.done() and not reader.cancelled() else None
        if refused is not None:
            raise refused
        outcome = turn.result()
    finally:
        # Also when the stream broke (the orchestrator gone): the turn must not go on.
        turn.cancel()
        reader.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(turn, reader, return_exceptions=True)
    yield pb.RunTurnStreamResponse(output=wire.turn_outcome_to_proto(outcome))
