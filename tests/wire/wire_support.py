"""A LeaseService servicer of a test's own behind a real gRPC server on port 0."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc

from mobkit.gen.lease.v1 import lease_service_pb2_grpc as pb_grpc
from mobkit.server.app import ServerConfig, ServiceRegistration, build_server
from mobkit.server.errors import ErrorTable


@contextlib.asynccontextmanager
async def serving_lease(
    servicer: pb_grpc.LeaseServiceServicer, errors: ErrorTable
) -> AsyncIterator[pb_grpc.LeaseServiceStub]:
    registration = ServiceRegistration(
        "mobkit.lease.v1.LeaseService",
        lambda server: pb_grpc.add_LeaseServiceServicer_to_server(servicer, server),
        errors,
    )
    server, port = build_server(ServerConfig([registration]))
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield pb_grpc.LeaseServiceStub(channel)
    finally:
        await channel.close()
        await server.stop(0)
