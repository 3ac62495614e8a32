"""Following the structural event log across disconnects and server restarts.

``WatchEvents(after_seq)`` streams every event with ``cursor > after_seq`` in
cursor order, catch-up first. :class:`EventStream` remembers the cursor of the
last event it handed out; when the stream breaks (UNAVAILABLE: the server died,
restarted or shut down) it reopens ``WatchEvents(after_seq=<that cursor>)`` with
backoff, so the caller sees each event exactly once, without gaps. Events the
server repeats at or below the cursor are dropped, as a second guard.

A cursor the server no longer has (trimmed away while disconnected) raises
:class:`~mobkit.core.errors.StaleEventCursor` rather than skipping events. If the
server stays unreachable for ``reconnect_timeout`` seconds the stream raises
``BackendUnavailable``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import grpc

from mobkit.client.options import RetryPolicy
from mobkit.core.errors import BackendUnavailable
from mobkit.core.types import MobStructuralEventEnvelope
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.wire.errors import error_from_rpc
from mobkit.wire.orchestrator import event_from_proto

DEFAULT_RECONNECT_TIMEOUT = 60.0

OpenWatch = Callable[[svc.WatchEventsRequest], Any]
"""Starts a ``WatchEvents`` call (the stub's unary-stream callable)."""

OnReconnect = Callable[[int, BaseException | None], None]
"""Told ``(cursor, error)`` before each reconnection attempt; the error is None when
the server ended the stream cleanly (shutting down)."""


class EventStream:
    """An async iterator of structural events that resumes from its cursor.

    ``cursor`` is the cursor of the last event returned (``after_seq`` until one
    is): persist it to resume in a later process with ``events(after_seq=...)``.
    ``reconnects`` counts reopened streams. Call :meth:`aclose` (or use
    ``async with``) when done early.
    """

    def __init__(
        self,
        open_watch: OpenWatch,
        after_seq: int = 0,
        *,
        retry: RetryPolicy | None = None,
        reconnect_timeout: float | None = DEFAULT_RECONNECT_TIMEOUT,
        on_reconnect: OnReconnect | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if after_seq < 0:
            raise ValueError("after_seq must not be negative")
        self.cursor = after_seq
        self.reconnects = 0
        self._open = open_watch
        self._retry = retry or RetryPolicy()
        self._reconnect_timeout = reconnect_timeout
        self._on_reconnect = on_reconnect
        self._sleep = sleep
        self._events = self._run()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> MobStructuralEventEnvelope:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self) -> AsyncGenerator[MobStructuralEventEnvelope, None]:
        failures = 0
        failing_since: float | None = None
        while True:
            opened = time.monotonic()
            call = self._open(svc.WatchEventsRequest(after_seq=self.cursor))
            error: grpc.RpcError | None = None
            try:
                async for reply in call:
                    if reply.WhichOneof("event") != "structural":
                        continue  # runtime events are live-only and carry no cursor
                    event = event_from_proto(reply.structural)
                    if event.cursor <= self.cursor:
                        continue
                    self.cursor = event.cursor
                    failures, failing_since = 0, None
                    yield event
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE:
                    raise error_from_rpc(err) from None
                error = err
            finally:
                call.cancel()
            # The stream broke (or the server ended it while shutting down): resume.
            now = time.monotonic()
            if now - opened > self._retry.max_backoff:
                failures, failing_since = 0, None  # it was up for a while: a fresh outage
            if failing_since is None:
                failing_since = now
            if (
                self._reconnect_timeout is not None
                and now - failing_since >= self._reconnect_timeout
            ):
                if error is not None:
                    raise error_from_rpc(error) from None
                raise BackendUnavailable("orchestrator", "event stream keeps ending")
            if self._on_reconnect is not None:
                self._on_reconnect(self.cursor, error)
            await self._sleep(self._retry.backoff(failures))
            failures += 1
            self.reconnects += 1
