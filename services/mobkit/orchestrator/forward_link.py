"""Forwarded turns multiplexed over one long-lived stream per peer (``ForwardStream``).

A forwarded ``Send`` used to be a whole call of its own from the replica that took
it to the owner: a new HTTP/2 stream, the owner's interceptor, deadline and metadata
handling, for every turn. On a stream that stays open, a forwarded turn is one
message each way. ``ForwardLink`` is the forwarding end (calls matched to answers by
id); ``serve_forwarded`` is the owner's (each call its own task, answered in any
order). A call that asks for ``progress`` (a streamed turn) gets the turn's progress
on the same stream before its outcome. The owner still validates every request and
checks the caller's scope once per stream, as the interceptor does for any call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from google.rpc import code_pb2, status_pb2

from mobkit.core.errors import BackendUnavailable, MobKitError
from mobkit.gen.orchestrator.v1 import orchestrator_pb2 as pb
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.runtime.sdk import ProgressSink, TurnProgress
from mobkit.server.errors import ErrorTable, internal_status, status_for_error
from mobkit.wire.calls import Decode
from mobkit.wire.errors import error_from_status
from mobkit.wire.runtime_stream import progress_from_proto, turn_progress_to_proto

log = logging.getLogger("mobkit.orchestrator")
METHOD = "/mobkit.orchestrator.v1.OrchestratorService/ForwardStream"
DEADLINE_MARGIN = 0.05  # s: the owner's waits end before the caller's deadline
MAX_PENDING = 4096
"""Answers an owner keeps queued for one stream before it drops progress."""
Run = Callable[
    [svc.ForwardStreamRequest, float | None, ProgressSink | None], Awaitable[pb.DispatchReceipt]
]


class StreamUnsupported(Exception):
    """The peer does not offer ForwardStream (an older replica): call it unary."""


class ForwardLink:
    """The forwarding end of one stream to one peer; reopened after it breaks."""

    def __init__(self, channel: grpc.aio.Channel, decode: Decode) -> None:
        self._method = channel.stream_stream(
            METHOD,
            request_serializer=svc.ForwardStreamRequest.SerializeToString,
            response_deserializer=svc.ForwardStreamResponse.FromString,
        )
        self._decode = decode
        self._ids = itertools.count(1)
        self._outbox: asyncio.Queue[svc.ForwardStreamRequest | None] | None = None
        self._pending: dict[int, asyncio.Future[svc.ForwardStreamResponse]] = {}
        self._progress: dict[int, ProgressSink] = {}
        self._reader: asyncio.Task[None] | None = None

    def _open(self) -> asyncio.Queue[svc.ForwardStreamRequest | None]:
        if self._outbox is not None:
            return self._outbox
        outbox = self._outbox = asyncio.Queue()

        async def requests() -> AsyncIterator[svc.ForwardStreamRequest]:
            while (item := await outbox.get()) is not None:
                yield item

        call: grpc.aio.StreamStreamCall[svc.ForwardStreamRequest, svc.ForwardStreamResponse]
        call = self._method(requests())  # type: ignore[assignment]
        self._reader = asyncio.get_running_loop().create_task(self._read(call, outbox))
        return outbox

    async def _read(
        self,
        call: grpc.aio.StreamStreamCall[svc.ForwardStreamRequest, svc.ForwardStreamResponse],
        outbox: asyncio.Queue[svc.ForwardStreamRequest | None],
    ) -> None:
        failure: BaseException = BackendUnavailable("orchestrator peer", "forward stream closed")
        try:
            async for answer in call:
                if answer.WhichOneof("result") == "progress":
                    await self._relay(answer)
                    continue
                self._progress.pop(answer.call_id, None)
                waiter = self._pending.pop(answer.call_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(answer)
        except grpc.RpcError as err:
            if err.code() is grpc.StatusCode.UNIMPLEMENTED:
                failure = StreamUnsupported()
            else:
                failure = self._decode(err)
        except asyncio.CancelledError:
            call.cancel()
            raise
        finally:
            if self._outbox is outbox:  # the next call opens a fresh stream
                self._outbox = None
            # What was in flight on this stream has no answer coming.
            pending, self._pending = self._pending, {}
            self._progress.clear()
            for waiter in pending.values():
                if not waiter.done():
                    waiter.set_exception(failure)

    async def _relay(self, answer: svc.ForwardStreamResponse) -> None:
        sink = self._progress.get(answer.call_id)
        event = progress_from_proto(answer.progress) if sink is not None else None
        if sink is not None and event is not None:
            try:
                await sink(event)
            except Exception:  # the caller's sink: never the stream's end
                log.exception("forwarded call %d: its progress sink failed", answer.call_id)

    async def call(
        self,
        request: svc.ForwardStreamRequest,
        timeout: float | None,
        progress: ProgressSink | None = None,
    ) -> pb.DispatchReceipt:
        """Send ``request`` (``send`` or ``dispatch`` set) and wait for its answer,
        until ``timeout`` (DEADLINE_EXCEEDED, as a unary call would end). With
        ``progress``, the turn's progress goes to it as the owner reports it; the
        sink must not block (it runs on the stream's reader)."""
        outbox = self._open()
        call_id = next(self._ids)
        request.call_id = call_id
        if timeout is not None:
            request.timeout_ms = max(1, int(timeout * 1000))
        waiter = asyncio.get_running_loop().create_future()
        self._pending[call_id] = waiter
        if progress is not None:
            request.progress = True
            self._progress[call_id] = progress
        outbox.put_nowait(request)
        try:
            answer = await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            self._withdraw(call_id)
            raise error_from_status(
                status_pb2.Status(
                    code=code_pb2.DEADLINE_EXCEEDED, message="forwarded call timed out"
                )
            ) from None
        except asyncio.CancelledError:
            self._withdraw(call_id)
            raise
        finally:
            self._progress.pop(call_id, None)
        if answer.WhichOneof("result") == "status":
            raise error_from_status(status_pb2.Status.FromString(answer.status))
        return answer.receipt

    def _withdraw(self, call_id: int) -> None:
        """The caller went away: the owner stops the call (best effort)."""
        self._progress.pop(call_id, None)
        if self._pending.pop(call_id, None) is not None and self._outbox is not None:
            self._outbox.put_nowait(svc.ForwardStreamRequest(call_id=call_id, cancel=True))

    def finish(self) -> None:
        """No more calls: the stream ends once the peer has answered those in flight."""
        if self._outbox is not None:
            self._outbox.put_nowait(None)  # done writing
            self._outbox = None

    async def close(self) -> None:
        self.finish()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


async def serve_forwarded(
    requests: AsyncIterator[svc.ForwardStreamRequest], run: Run, table: ErrorTable
) -> AsyncIterator[svc.ForwardStreamResponse]:
    """The owner's end of one stream: every call runs as its own task (``run``, with
    the time its waits may take and, when the call asks, a sink for its progress) and
    is answered when it ends."""
    answers: asyncio.Queue[svc.ForwardStreamResponse | None] = asyncio.Queue()
    calls: dict[int, asyncio.Task[None]] = {}

    def sink_for(call_id: int) -> ProgressSink:
        async def sink(event: TurnProgress) -> None:
            if answers.qsize() < MAX_PENDING:  # a reader that lags loses progress only
                answer = svc.ForwardStreamResponse(call_id=call_id)
                answer.progress.CopyFrom(turn_progress_to_proto(event))
                answers.put_nowait(answer)

        return sink

    async def one(request: svc.ForwardStreamRequest) -> None:
        deadline = request.timeout_ms / 1000 if request.timeout_ms else None
        wait = None if deadline is None else max(0.0, deadline - DEADLINE_MARGIN)
        answer = svc.ForwardStreamResponse(call_id=request.call_id)
        sink = sink_for(request.call_id) if request.progress else None
        try:
            answer.receipt.CopyFrom(await asyncio.wait_for(run(request, wait, sink), deadline))
        except asyncio.CancelledError:
            return  # withdrawn by the caller, or the stream ended: no answer
        except TimeoutError:
            status = status_pb2.Status(
                code=code_pb2.DEADLINE_EXCEEDED, message="forwarded call timed out"
            )
            answer.status = status.SerializeToString()
        except Exception as exc:
            known = status_for_error(exc, table) if isinstance(exc, MobKitError) else None
            if known is None:
                log.exception("unhandled error in a forwarded call", exc_info=exc)
            answer.status = (known or internal_status()).SerializeToString()
        finally:
            calls.pop(request.call_id, None)
        answers.put_nowait(answer)

    async def read() -> None:
        try:
            async for request in requests:
                if request.cancel:
                    if (task := calls.pop(request.call_id, None)) is not None:
                        task.cancel()
                    continue
                task = asyncio.get_running_loop().create_task(one(request))
                calls[request.call_id] = task
        finally:
            answers.put_nowait(None)

    reader = asyncio.get_running_loop().create_task(read())
    try:
        reading = True
        while reading or calls or not answers.empty():
            answer = await answers.get()
            if answer is None:
                reading = False
                if reader.exception() is not None:  # e.g. a request that fails validation
                    raise reader.exception()  # type: ignore[misc]
                continue
            yield answer
    finally:
        reader.cancel()
        for task in list(calls.values()):
            task.cancel()
