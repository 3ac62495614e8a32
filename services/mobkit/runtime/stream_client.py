"""The orchestrator's side of ``RunTurnStream``: open the stream with the turn, answer
the runtime's callbacks with the turn's ``peer_sender`` / ``tool_caller``, pass its
progress on, and return its output.

Each callback is answered in its own task, so the runtime may have several calls
outstanding (a peer's turn can take long; a tool call need not wait for it). A
callback that fails with a MobKit error is answered with that error, which the
agent sees as the same exception it would in-process; any other failure is answered
as INTERNAL and, if the turn then fails, raised here as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, TypeAlias

import grpc

from mobkit.core.errors import MobKitError
from mobkit.gen.runtime.v1 import runtime_service_pb2 as pb
from mobkit.gen.runtime.v1 import runtime_service_pb2_grpc as pb_grpc
from mobkit.runtime.domain import CallbackUnavailable, TurnOutcome
from mobkit.runtime.sdk import PeerSender, ProgressSink, ToolCaller
from mobkit.runtime.stream_host import CALLBACK_ERRORS
from mobkit.wire import runtime as wire
from mobkit.wire import runtime_stream as stream
from mobkit.wire.errors import RemoteError, error_from_rpc

log = logging.getLogger("mobkit.runtime")

Call: TypeAlias = "grpc.aio.StreamStreamCall[pb.RunTurnStreamRequest, pb.RunTurnStreamResponse]"


class _Answerer:
    """Runs the runtime's callbacks and writes their answers (one write at a time)."""

    def __init__(
        self,
        rpc: Call,
        session_id: str,
        peer_sender: PeerSender | None,
        tool_caller: ToolCaller | None,
    ) -> None:
        self._rpc = rpc
        self._session_id = session_id
        self._peer_sender = peer_sender
        self._tool_caller = tool_caller
        self._writing = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()
        self.failure: BaseException | None = None

    async def write(self, msg: pb.RunTurnStreamRequest) -> None:
        async with self._writing:
            await self._rpc.write(msg)

    def start(self, request: pb.CallbackRequest) -> None:
        try:
            call: stream.Callback | MobKitError = stream.callback_from_proto(request)
        except MobKitError as exc:  # a malformed call: the agent gets INVALID_ARGUMENT
            call = exc
        task = asyncio.create_task(self._answer(request.call_id, call))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, call: stream.Callback) -> Any:
        if isinstance(call, stream.PeerMessageCall):
            if self._peer_sender is None:
                raise CallbackUnavailable(self._session_id, "a peer message")
            return await self._peer_sender(call.to_identity, call.text)
        if self._tool_caller is None:
            raise CallbackUnavailable(self._session_id, "a tool call")
        return await self._tool_caller(call.name, call.arguments)

    async def _answer(self, call_id: str, call: stream.Callback | MobKitError) -> None:
        try:
            if isinstance(call, MobKitError):
                raise call
            answer = stream.reply_to_proto(call_id, call, await self._run(call))
        except MobKitError as exc:
            answer = stream.error_to_proto(call_id, exc)
        except Exception as exc:
            log.warning("session %s: callback %s failed: %r", self._session_id, call_id, exc)
            self.failure = self.failure or exc
            answer = stream.error_to_proto(call_id, RemoteError("INTERNAL", "internal error"))
        # If the stream already ended, its outcome says why.
        with contextlib.suppress(grpc.RpcError, asyncio.InvalidStateError, RuntimeError):
            await self.write(answer)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


async def run_turn_stream(
    stub: pb_grpc.AgentRuntimeServiceAsyncStub,
    call: wire.RunTurnCall,
    *,
    peer_sender: PeerSender | None,
    tool_caller: ToolCaller | None,
    progress: ProgressSink | None,
    timeout: float | None,
    errors: tuple[type[MobKitError], ...],
) -> TurnOutcome:
    """One turn over RunTurnStream; raises what the runtime's turn failed with (decoded
    with ``errors`` beside the shared reasons and the callbacks' own)."""
    rpc: Call = stub.RunTurnStream(timeout=timeout)
    answerer = _Answerer(rpc, call.session_id, peer_sender, tool_caller)
    try:
        await answerer.write(pb.RunTurnStreamRequest(start=wire.run_turn_request_to_proto(call)))
        while True:
            msg = await rpc.read()
            if not isinstance(msg, pb.RunTurnStreamResponse):  # EOF
                raise RemoteError("UNKNOWN", "the runtime ended RunTurnStream without an output")
            kind = msg.WhichOneof("message")
            if kind == "callback":
                answerer.start(msg.callback)
            elif kind == "progress" and progress is not None:
                event = stream.progress_from_proto(msg.progress)
                if event is not None:
                    await progress(event)
            elif kind == "output":
                # The turn is done: the call's status follows on its own, unawaited
                # (waiting for it costs a turn a wake-up more).
                _finishing(rpc)
                return wire.turn_outcome_from_proto(msg.output)
    except grpc.RpcError as err:
        if answerer.failure is not None:
            raise answerer.failure from None
        raise error_from_rpc(err, *errors, *CALLBACK_ERRORS) from None
    finally:
        await answerer.stop()
        if rpc not in _FINISHING:
            rpc.cancel()  # the turn did not end: the runtime rolls it back


_FINISHING: set[Call] = set()
"""Calls whose output came, kept referenced until their status arrives (a call
dropped before it is done is cancelled)."""


def _finishing(rpc: Call) -> None:
    _FINISHING.add(rpc)
    rpc.add_done_callback(lambda _: _FINISHING.discard(rpc))
