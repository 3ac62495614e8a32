"""The asyncio channel every client object calls through."""

from __future__ import annotations

from typing import Any

import grpc

from mobkit.client.options import ClientOptions
from mobkit.client.retry import RetryInterceptor
from mobkit.security.tls import secure_channel

# gRPC backs off reconnecting up to 120 s by default; a client waiting for a
# restarted server would then sit out most of its deadline after the server is back.
RECONNECT_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def open_channel(
    options: ClientOptions, address: str | None = None
) -> tuple[grpc.aio.Channel, RetryInterceptor]:
    """A channel to ``address`` (default ``options.address``) with TLS, the bearer
    token, deadlines and retries from ``options``. Call from the event loop that
    will use it."""
    retry = RetryInterceptor(options.retry, options.timeout)
    channel = secure_channel(
        address or options.address,
        options.tls,
        token=options.token,
        options=[*RECONNECT_OPTIONS, *options.channel_options],
        interceptors=[retry],
    )
    return channel, retry
