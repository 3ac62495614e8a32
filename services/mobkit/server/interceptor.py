"""One server interceptor for every MobKit service.

Per call it: sets the request id (from ``x-request-id`` metadata, else a new
one) for structured logs and echoes it back; checks the caller's credentials
(when an authorizer is configured) before anything reads the request;
validates identity fields; turns domain errors into ``google.rpc.Status``
through the service's error table; and reports (method, status code name,
seconds) to the observers (metrics). Cancellation and explicit aborts pass
through untouched; any other exception is logged and becomes INTERNAL without
leaking its text.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from grpc_status import rpc_status

from mobkit.core.errors import InvalidArgument, MobKitError
from mobkit.server import context as callctx
from mobkit.server.errors import ErrorTable, code_for, internal_status, status_for_error
from mobkit.server.validation import validate_request

log = logging.getLogger("mobkit.rpc")

REQUEST_ID_HEADER = "x-request-id"

Authorizer = Callable[[str, Sequence[tuple[str, Any]]], object]
"""(method, invocation metadata) -> raises a MobKitError (UNAUTHENTICATED, ...) to refuse."""


def _code_name(exc: Exception, table: ErrorTable) -> str:
    code = code_for(exc, table) if isinstance(exc, MobKitError) else None
    return (code or grpc.StatusCode.INTERNAL).name


def _ctx_code_name(ctx: grpc.aio.ServicerContext, default: str) -> str:
    """The code a handler set or aborted with (``ctx.code()``), else ``default``."""
    code = ctx.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), default)
    return default


def _decoded(raw: Any, decode: Callable[[bytes], Any] | None) -> Any:
    if decode is None or not isinstance(raw, bytes):
        return raw
    try:
        return decode(raw)
    except Exception as exc:  # DecodeError, invalid UTF-8, ...
        raise InvalidArgument("request", f"undecodable request: {exc}") from None


def _service_of(method: str) -> str:
    # "/mobkit.lease.v1.LeaseService/AcquireLeases" -> "mobkit.lease.v1.LeaseService"
    return method.rsplit("/", 1)[0].lstrip("/")


class ServiceCallInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        tables: Mapping[str, ErrorTable],
        *,
        observers: list[Any] | None = None,
        authorizer: Authorizer | None = None,
    ) -> None:
        self._tables = tables
        self._observers = observers or []
        self._authorizer = authorizer
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:  # a method's handler never changes once serving
            return wrapped
        handler = await continuation(details)
        service = _service_of(method)
        if handler is None or service not in self._tables:
            return handler  # health, reflection and unknown methods
        table = self._tables[service]
        # Requests are decoded inside the call, so undecodable bytes (garbage, invalid
        # UTF-8 in a string) become INVALID_ARGUMENT with an ErrorInfo, not UNKNOWN.
        decode = handler.request_deserializer
        if handler.unary_unary:
            wrapped = grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method, table, decode),
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream:
            wrapped = grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method, table, decode),
                response_serializer=handler.response_serializer,
            )
        elif handler.stream_stream:
            # Each request of the stream is decoded and validated as it is read.
            wrapped = grpc.stream_stream_rpc_method_handler(
                self._wrap_stream(handler.stream_stream, method, table, decode, each=True),
                response_serializer=handler.response_serializer,
            )
        else:
            return handler
        self._wrapped[method] = wrapped
        return wrapped

    def _begin(self, method: str, ctx: grpc.aio.ServicerContext) -> None:
        """Request id and caller of this call; raises the authorizer's refusal (inside
        the call, so it is translated and counted)."""
        metadata: Sequence[tuple[str, Any]] = tuple(ctx.invocation_metadata() or ())
        rid = next((v for k, v in metadata if k == REQUEST_ID_HEADER), None)
        request_id = rid if isinstance(rid, str) and rid else uuid.uuid4().hex
        callctx.request_id.set(request_id)
        callctx.rpc_method.set(method)
        ctx.set_trailing_metadata(((REQUEST_ID_HEADER, request_id),))
        callctx.caller.set(None)
        if self._authorizer is not None:
            callctx.caller.set(self._authorizer(method, metadata))

    async def _fail(
        self, exc: BaseException, method: str, table: ErrorTable, ctx: grpc.aio.ServicerContext
    ) -> None:
        status = status_for_error(exc, table) if isinstance(exc, MobKitError) else None
        if status is None:
            log.exception("unhandled error in %s", method, exc_info=exc)
            status = internal_status()
        else:
            log.info("%s failed: %s", method, exc)
        await ctx.abort_with_status(rpc_status.to_status(status))

    def _finish(self, method: str, started: float, code: str) -> None:
        elapsed = time.perf_counter() - started
        for obs in self._observers:
            obs(method, code, elapsed)

    def _wrap_unary(
        self,
        inner: Any,
        method: str,
        table: ErrorTable,
        decode: Callable[[bytes], Any] | None,
    ) -> Any:
        async def call(request: Any, ctx: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code = "UNKNOWN"
            try:
                self._begin(method, ctx)
                request = _decoded(request, decode)
                validate_request(request)
                reply = await inner(request, ctx)
                code = _ctx_code_name(ctx, "OK")
                return reply
            except grpc.aio.AbortError:
                code = _ctx_code_name(ctx, "UNKNOWN")
                raise
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except Exception as exc:  # translated, never a crash
                code = _code_name(exc, table)
                await self._fail(exc, method, table, ctx)
            finally:
                self._finish(method, started, code)

        return call

    def _wrap_stream(
        self,
        inner: Any,
        method: str,
        table: ErrorTable,
        decode: Callable[[bytes], Any] | None,
        *,
        each: bool = False,
    ) -> Any:
        """A server-streaming call; ``each``: a bidirectional one, whose ``request`` is
        the stream of requests."""

        async def requests(raw: AsyncIterator[Any]) -> AsyncIterator[Any]:
            async for item in raw:
                request = _decoded(item, decode)
                validate_request(request)
                yield request

        async def call(request: Any, ctx: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            code = "UNKNOWN"
            try:
                self._begin(method, ctx)
                if each:
                    request = requests(request)
                else:
                    request = _decoded(request, decode)
                    validate_request(request)
                async for item in inner(request, ctx):
                    yield item
                code = _ctx_code_name(ctx, "OK")
            except grpc.aio.AbortError:
                code = _ctx_code_name(ctx, "UNKNOWN")
                raise
            except (asyncio.CancelledError, GeneratorExit):  # the client went away
                code = "CANCELLED"
                raise
            except Exception as exc:
                code = _code_name(exc, table)
                await self._fail(exc, method, table, ctx)
            finally:
                self._finish(method, started, code)

        return call
