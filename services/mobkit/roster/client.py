"""gRPC client adapter: a :class:`~mobkit.roster.domain.RosterProvider` over the
RosterService, raising the same domain exceptions as an in-process provider."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from mobkit.core.errors import MobKitError, RosterUnavailable
from mobkit.core.types import DurableAgentSpec, RosterContext
from mobkit.gen.roster.v1 import roster_service_pb2 as pb
from mobkit.gen.roster.v1 import roster_service_pb2_grpc as pb_grpc
from mobkit.roster.domain import RosterSnapshot, RosterUnreadable
from mobkit.wire import roster as wire
from mobkit.wire.calls import Calls
from mobkit.wire.errors import error_from_rpc


def _error(err: grpc.RpcError) -> MobKitError:
    # Both bad and unreadable rosters say ROSTER_INVALID; the code tells them apart.
    unreadable = hasattr(err, "code") and err.code() == grpc.StatusCode.FAILED_PRECONDITION
    specific = (RosterUnavailable, RosterUnreadable) if unreadable else (RosterUnavailable,)
    return error_from_rpc(err, *specific)


class GrpcRosterProvider:
    """Calls a remote RosterService. ``timeout`` bounds each GetRoster (seconds) and
    ``retries`` repeats it on UNAVAILABLE (:mod:`mobkit.wire.calls`); watches are
    unbounded streams."""

    def __init__(
        self, channel: grpc.aio.Channel, *, timeout: float | None = 30.0, retries: int = 0
    ) -> None:
        self._stub = pb_grpc.RosterServiceStub(channel)
        self._call = Calls(_error, timeout=timeout, retries=retries)

    async def get_roster(self, context: RosterContext | None = None) -> RosterSnapshot:
        request = pb.GetRosterRequest(context=wire.roster_context_to_proto(context))
        reply = await self._call(self._stub.GetRoster, request, idempotent=True)
        return wire.snapshot_from_proto(reply)

    async def roster(self, context: RosterContext | None = None) -> list[DurableAgentSpec]:
        return list((await self.get_roster(context)).specs)

    async def watch_roster(
        self, context: RosterContext | None = None
    ) -> AsyncIterator[RosterSnapshot]:
        request = pb.WatchRosterRequest(context=wire.roster_context_to_proto(context))
        call = self._stub.WatchRoster(request)
        try:
            async for reply in call:
                yield wire.snapshot_from_proto(reply)
        except grpc.RpcError as err:
            raise _error(err) from None
        finally:
            call.cancel()
