"""The one call path of MobKit's internal gRPC clients (the lease, continuity, roster,
topology, customizer and runtime adapters, and the orchestrator's forwarding router).

Every unary call gets the client's deadline (or the one given for that call); a call
marked ``idempotent`` is tried again on UNAVAILABLE, up to ``retries`` more times
after a backoff of ``backoff * 2**attempt`` seconds; every failure leaves as the
domain exception the error registry decodes from the answer (:mod:`mobkit.wire.errors`),
so callers catch the same exceptions as with an in-process provider. Each attempt
gets the whole deadline: a retry answers a connection lost in flight, not a slow
server.

Only calls the caller marks ``idempotent`` are repeated: a re-sent call that is not
(a record delete) may have run before the connection broke, so its caller decides.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from mobkit.core.errors import MobKitError
from mobkit.wire.errors import error_from_rpc

R = TypeVar("R")

Decode = Callable[[grpc.RpcError], MobKitError]
"""A failed call -> the exception its client raises."""

Metadata = tuple[tuple[str, str], ...]

RETRY_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})


class _Default(enum.Enum):
    TIMEOUT = enum.auto()


CLIENT_TIMEOUT = _Default.TIMEOUT
"""A call's ``timeout`` when it takes the client's (``None`` means no deadline)."""


def decoder(*specific: type[MobKitError]) -> Decode:
    """Decoding through the registry, ``specific`` classes winning for their reason
    (see :func:`~mobkit.wire.errors.error_from_rpc`)."""

    def decode(err: grpc.RpcError) -> MobKitError:
        return error_from_rpc(err, *specific)

    return decode


class Calls:
    """How one client calls its service: deadline, retries, error decoding."""

    def __init__(
        self,
        decode: Decode,
        *,
        timeout: float | None = 30.0,
        retries: int = 0,
        backoff: float = 0.1,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must not be negative")
        self.decode = decode
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep

    async def __call__(
        self,
        method: Callable[..., Awaitable[R]],
        request: Any,
        *,
        idempotent: bool = False,
        timeout: float | _Default | None = CLIENT_TIMEOUT,
        metadata: Metadata | None = None,
    ) -> R:
        """``await method(request)`` under this client's rules."""
        deadline = self.timeout if timeout is CLIENT_TIMEOUT else timeout
        attempts = 1 + (self.retries if idempotent else 0)
        for attempt in range(attempts):
            try:
                return await method(request, timeout=deadline, metadata=metadata)
            except grpc.RpcError as err:
                if attempt + 1 < attempts and err.code() in RETRY_CODES:
                    await self._sleep(self.backoff * 2**attempt)
                    continue
                raise self.decode(err) from None
        raise AssertionError("unreachable")
