"""Streamed turns (``SendStream``, ``DispatchStream``): a turn's progress as it happens,
then its receipt. Mixed into the orchestrator's servicer; proto <-> domain only.

The turn runs in a task of its own, not in the call: a client that goes away
mid-stream cancels only the stream, and the turn goes on to its checkpoint as a
Send's would. Progress waits in a queue bounded per turn (``MAX_PENDING``); a
stream that stops reading past it loses progress, never the turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import grpc

from mobkit.core.types import DispatchInput, DispatchReceipt
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.runtime.sdk import ProgressSink, TurnProgress
from mobkit.wire.orchestrator import dispatch_input_from_proto, receipt_to_proto
from mobkit.wire.runtime_stream import turn_progress_to_proto

MAX_PENDING = 4096
R = TypeVar("R")
Deliver = Callable[[str, DispatchInput, ProgressSink], Coroutine[Any, Any, DispatchReceipt]]

_turns: set[asyncio.Task[DispatchReceipt]] = set()
"""Turns whose stream went away: kept referenced until they finish."""


async def streamed(
    deliver: Deliver, identity: str, message: DispatchInput
) -> AsyncIterator[TurnProgress | DispatchReceipt]:
    """``deliver``'s progress events, then its receipt (or its error, raised)."""
    queue: asyncio.Queue[TurnProgress] = asyncio.Queue(maxsize=MAX_PENDING)

    async def sink(event: TurnProgress) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(event)

    turn: asyncio.Task[DispatchReceipt] = asyncio.create_task(
        deliver(identity, message, sink), name=f"streamed-{identity}"
    )
    _turns.add(turn)
    turn.add_done_callback(_turns.discard)
    try:
        while not turn.done() or not queue.empty():
            if queue.empty():
                getting = asyncio.ensure_future(queue.get())
                await asyncio.wait({getting, turn}, return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():
                    getting.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await getting
                    continue
                yield getting.result()
            else:
                yield queue.get_nowait()
        yield turn.result()
    finally:
        # The stream ended (or its client went away): the turn is not cancelled.
        if not turn.done():
            turn.add_done_callback(_consume)


def _consume(turn: asyncio.Task[DispatchReceipt]) -> None:
    if not turn.cancelled():
        turn.exception()  # retrieved: a failed turn nobody waits for is not a warning


class StreamingRpcs:
    """``SendStream`` and ``DispatchStream`` over the servicer's orchestrator."""

    o: Any

    def _routing_of(self, context: grpc.aio.ServicerContext) -> dict[str, Any]:
        """``forwarded`` and ``timeout`` of the call (the servicer's rules)."""
        raise NotImplementedError

    def SendStream(
        self, request: svc.SendStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[svc.SendStreamResponse]:
        return self._streamed(self.o.send, request, context, svc.SendStreamResponse)

    def DispatchStream(
        self, request: svc.DispatchStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[svc.DispatchStreamResponse]:
        return self._streamed(self.o.dispatch, request, context, svc.DispatchStreamResponse)

    async def _streamed(
        self,
        turn: Callable[..., Coroutine[Any, Any, DispatchReceipt]],
        request: svc.SendStreamRequest | svc.DispatchStreamRequest,
        context: grpc.aio.ServicerContext,
        response: Callable[..., R],
    ) -> AsyncIterator[R]:
        routing = self._routing_of(context)

        async def deliver(i: str, m: DispatchInput, sink: ProgressSink) -> DispatchReceipt:
            return await turn(i, m, progress=sink, **routing)

        message = dispatch_input_from_proto(request.input)
        async for item in streamed(deliver, request.identity, message):
            if isinstance(item, TurnProgress):
                yield response(progress=turn_progress_to_proto(item))
            else:
                yield response(receipt=receipt_to_proto(item))
