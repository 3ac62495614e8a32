"""gRPC surface of a :class:`~mobkit.roster.domain.RosterProvider`: convert, call, convert."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from mobkit.core.errors import RosterInvalid
from mobkit.gen.roster.v1 import roster_service_pb2 as pb
from mobkit.gen.roster.v1 import roster_service_pb2_grpc as pb_grpc
from mobkit.roster.domain import RosterProvider, RosterUnreadable
from mobkit.server.errors import service_errors
from mobkit.wire import roster as wire

SERVICE_NAME = "mobkit.roster.v1.RosterService"

# RosterUnavailable is a BackendUnavailable: UNAVAILABLE through the base entry.
ERRORS: dict[type[BaseException], grpc.StatusCode] = service_errors(RosterInvalid, RosterUnreadable)


class RosterServicer(pb_grpc.RosterServiceServicer):
    def __init__(self, provider: RosterProvider) -> None:
        self._provider = provider

    async def GetRoster(
        self, request: pb.GetRosterRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRosterResponse:
        snapshot = await self._provider.get_roster(wire.roster_context_from_proto(request.context))
        return wire.get_roster_response(snapshot)

    async def WatchRoster(
        self, request: pb.WatchRosterRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchRosterResponse]:
        stream = self._provider.watch_roster(wire.roster_context_from_proto(request.context))
        async for snapshot in stream:
            yield wire.watch_roster_response(snapshot)
