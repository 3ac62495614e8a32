"""Streamed and asynchronous turns: ``SendStream`` / ``DispatchStream`` and turn
tickets (``SubmitTurn``, ``GetTurn``, ``WatchTurn``), as an asyncio client.

::

    async for item in mk.send_stream("alice", "tell me a story"):
        if isinstance(item, TurnProgress) and item.kind == "delta":
            print(item.text, end="", flush=True)
    ticket = await mk.submit_turn("alice", "later", idempotency_key="k-1")
    done = await mk.wait_for_turn(ticket.turn_id)        # WatchTurn to the end
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import grpc

from mobkit.client._loop import LoopThread
from mobkit.core.types import (
    DispatchInput,
    DispatchOrigin,
    DispatchReceipt,
    MobStructuralEventEnvelope,
)
from mobkit.flows.errors import TurnNotFound
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2_grpc as svc_grpc
from mobkit.orchestrator.tickets import Ticket
from mobkit.runtime.sdk import TurnProgress
from mobkit.wire.calls import Calls, decoder
from mobkit.wire.orchestrator import dispatch_input_to_proto, event_from_proto, receipt_from_proto
from mobkit.wire.runtime_stream import progress_from_proto
from mobkit.wire.tickets import ticket_from_proto

R = TypeVar("R")


TurnTicket = Ticket
"""An asynchronous turn: ``receipt`` once SUCCEEDED, ``failure_*`` once FAILED."""
_ticket = ticket_from_proto


class AsyncTurnClient:
    def __init__(self, channel: grpc.aio.Channel, *, timeout: float | None = None) -> None:
        self._stub = svc_grpc.OrchestratorServiceStub(channel)
        self._timeout = timeout
        self._calls = Calls(decoder(TurnNotFound), timeout=None)

    async def _call(
        self, method: Callable[..., Awaitable[R]], request: Any, timeout: float | None
    ) -> R:
        # Deadlines and UNAVAILABLE retries are the channel's (RetryInterceptor).
        return await self._calls(method, request, timeout=timeout or self._timeout)

    async def send_stream(
        self,
        identity: str,
        text: str,
        *,
        dispatch: bool = False,
        origin: DispatchOrigin = DispatchOrigin.SYSTEM,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> AsyncIterator[TurnProgress | DispatchReceipt]:
        """The turn's progress as it happens, then its receipt (the last item).
        Leaving the loop early does not stop the turn."""
        value = DispatchInput(
            text, origin, correlation_id=correlation_id, idempotency_key=idempotency_key
        )
        message = dispatch_input_to_proto(value)
        call: Any
        if dispatch:
            call = self._stub.DispatchStream(
                svc.DispatchStreamRequest(identity=identity, input=message)
            )
        else:
            call = self._stub.SendStream(svc.SendStreamRequest(identity=identity, input=message))
        try:
            async for item in call:
                if item.HasField("receipt"):
                    yield receipt_from_proto(item.receipt)
                elif (event := progress_from_proto(item.progress)) is not None:
                    yield event
        except grpc.RpcError as err:
            raise self._calls.decode(err) from None
        finally:
            call.cancel()

    async def submit_turn(
        self,
        identity: str,
        text: str,
        *,
        dispatch: bool = False,
        origin: DispatchOrigin = DispatchOrigin.SYSTEM,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        timeout: float | None = None,
    ) -> TurnTicket:
        """Accept a turn and return its ticket at once; safe to retry with a key."""
        value = DispatchInput(
            text, origin, correlation_id=correlation_id, idempotency_key=idempotency_key
        )
        request = svc.SubmitTurnRequest(
            identity=identity, input=dispatch_input_to_proto(value), dispatch=dispatch
        )
        reply = await self._call(self._stub.SubmitTurn, request, timeout)
        return _ticket(reply.turn)

    async def get_turn(self, turn_id: str, *, timeout: float | None = None) -> TurnTicket:
        reply = await self._call(self._stub.GetTurn, svc.GetTurnRequest(turn_id=turn_id), timeout)
        return _ticket(reply.turn)

    async def watch_turn(
        self, turn_id: str, *, after_seq: int = 0, progress: bool = False
    ) -> AsyncIterator[MobStructuralEventEnvelope | TurnProgress | TurnTicket]:
        """The finished ticket (the last item); with ``progress``, the turn's
        ``TurnProgress`` before it (any replica relays its owner's)."""
        request = svc.WatchTurnRequest(turn_id=turn_id, after_seq=after_seq, progress=progress)
        call = self._stub.WatchTurn(request)
        try:
            async for item in call:
                if item.HasField("event"):
                    yield event_from_proto(item.event)
                elif item.HasField("progress"):
                    if (event := progress_from_proto(item.progress)) is not None:
                        yield event
                else:
                    yield _ticket(item.turn)
        except grpc.RpcError as err:
            raise self._calls.decode(err) from None
        finally:
            call.cancel()

    async def wait_for_turn(self, turn_id: str) -> TurnTicket:
        """The finished ticket (Meerkat's ``wait_for_turn``)."""
        final: TurnTicket | None = None
        async for item in self.watch_turn(turn_id):
            if isinstance(item, TurnTicket):
                final = item
        assert final is not None
        return final


class TurnClient:
    """The blocking twin of :class:`AsyncTurnClient` (``MobKit.turns``)."""

    def __init__(self, loop: LoopThread, client: AsyncTurnClient) -> None:
        self._loop = loop
        self._async = client

    def send_stream(
        self, identity: str, text: str, **kwargs: Any
    ) -> Iterator[TurnProgress | DispatchReceipt]:
        return self._loop.iterate(self._async.send_stream(identity, text, **kwargs))

    def submit_turn(self, identity: str, text: str, **kwargs: Any) -> TurnTicket:
        return self._loop.run(self._async.submit_turn(identity, text, **kwargs))

    def get_turn(self, turn_id: str, *, timeout: float | None = None) -> TurnTicket:
        return self._loop.run(self._async.get_turn(turn_id, timeout=timeout))

    def wait_for_turn(self, turn_id: str) -> TurnTicket:
        return self._loop.run(self._async.wait_for_turn(turn_id))
