"""A bare grpc.aio echo server: the baseline round trip (run as a child process)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import grpc


async def main() -> None:
    async def echo(request: bytes, context: object) -> bytes:
        return request

    async def echo_stream(requests: AsyncIterator[bytes], context: object) -> AsyncIterator[bytes]:
        async for request in requests:
            yield request
            return

    server = grpc.aio.server()
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        # The floor of a bidirectional call: one message each way.
        "EchoStream": grpc.stream_stream_rpc_method_handler(echo_stream),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main())
