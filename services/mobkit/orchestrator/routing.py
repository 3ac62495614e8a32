"""Forwarding calls to the replica that owns an identity.

Any replica accepts Send / Dispatch / GetIdentityStatus and the operator
commands (suspend, resume, retire, reset) for any identity. When
it does not host the identity, it looks up the owner in etcd and forwards the
call there, marked as forwarded so that it is never forwarded twice (a stale
owner answers NOT_ACTIVE instead of bouncing the call around).
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from mobkit.core.identity import FencingToken
from mobkit.core.types import DispatchInput, DispatchReceipt, IdentityStatus
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2_grpc as svc_grpc
from mobkit.orchestrator.fleet import ReplicaRegistry, holder_address
from mobkit.orchestrator.forward_link import ForwardLink, StreamUnsupported
from mobkit.orchestrator.tickets import Ticket
from mobkit.runtime.sdk import ProgressSink, TurnProgress
from mobkit.wire.calls import Calls, decoder
from mobkit.wire.orchestrator import (
    dispatch_input_to_proto,
    receipt_from_proto,
    status_from_proto,
    status_page_token,
)
from mobkit.wire.runtime_stream import progress_from_proto
from mobkit.wire.tickets import ticket_from_proto

MAX_PEER_CHANNELS = 64
"""Peer channels kept open; the least recently used beyond it is closed. Replicas that
restart on new addresses (pods, ephemeral ports) would otherwise add one per restart."""
CHANNEL_CLOSE_GRACE = 30.0  # s for an evicted channel's calls in flight to finish
FORWARDED = "x-mobkit-forwarded"
LOCAL_ONLY = "x-mobkit-local-only"
Stub = svc_grpc.OrchestratorServiceStub
_COMMANDS: dict[str, tuple[str, Any]] = {
    "suspend": ("SuspendIdentity", svc.SuspendIdentityRequest),
    "resume": ("ResumeIdentity", svc.ResumeIdentityRequest),
    "retire": ("RetireIdentity", svc.RetireIdentityRequest),
    "reset": ("ResetIdentity", svc.ResetIdentityRequest),
}


class Router:
    """Finds owners through the replica registry and forwards over gRPC."""

    def __init__(
        self,
        registry: ReplicaRegistry,
        open_channel: Callable[[str], grpc.aio.Channel] = grpc.aio.insecure_channel,
    ) -> None:
        self.registry = registry
        self._open = open_channel
        # One channel and stub per peer address, least recently used first.
        self._channels: OrderedDict[str, tuple[grpc.aio.Channel, Stub]] = OrderedDict()
        self._evicted: dict[grpc.aio.Channel, asyncio.Task[None]] = {}
        # No retries: a forwarded call's caller waits for the next owner itself.
        self._calls = Calls(decoder(), timeout=None)
        # Turns go over one stream per peer; peers without it (older) take unary calls.
        self._links: dict[str, ForwardLink] = {}
        self._unary_only: set[str] = set()

    def _stub(self, address: str) -> Stub:
        return self._open_peer(address)[1]

    def _open_peer(self, address: str) -> tuple[grpc.aio.Channel, Stub]:
        peer = self._channels.get(address)
        if peer is None:
            channel = self._open(address)
            peer = self._channels[address] = (channel, Stub(channel))
            while len(self._channels) > MAX_PEER_CHANNELS:
                gone, (evicted, _stub) = self._channels.popitem(last=False)
                link = self._links.pop(gone, None)
                task = asyncio.get_running_loop().create_task(self._close_evicted(evicted, link))
                self._evicted[evicted] = task
                task.add_done_callback(functools.partial(self._closed, evicted))
        else:
            self._channels.move_to_end(address)
        return peer

    async def _close_evicted(self, channel: grpc.aio.Channel, link: ForwardLink | None) -> None:
        if link is not None:
            link.finish()  # the peer answers what is in flight, then ends the stream
        await channel.close(grace=CHANNEL_CLOSE_GRACE)
        if link is not None:
            await link.close()

    def _link(self, address: str) -> ForwardLink | None:
        """The stream to ``address`` (on its current channel: an evicted channel takes
        its link along), or None for a peer that offers none."""
        if address in self._unary_only:
            return None
        channel = self._open_peer(address)[0]
        link = self._links.get(address)
        if link is None:
            link = self._links[address] = ForwardLink(channel, self._calls.decode)
        return link

    def _closed(self, channel: grpc.aio.Channel, _task: asyncio.Task[None]) -> None:
        self._evicted.pop(channel, None)

    async def owner(self, identity: str, *, recent: bool = False) -> str | None:
        return await self.registry.owner(identity, recent=recent)

    def forget_owner(self, identity: str) -> None:
        self.registry.forget_owner(identity)

    async def members(self) -> list[str]:
        return await self.registry.members()

    async def held(self) -> dict[str, str]:
        return await self.registry.held()

    async def watch_vacancies(self, notify: Callable[[], None]) -> None:
        await self.registry.watch_vacancies(notify)

    async def intents(self) -> dict[str, str]:
        return await self.registry.intents()

    async def set_intent(
        self, identity: str, intent: str | None, fencing_token: FencingToken | None
    ) -> bool:
        return await self.registry.set_intent(identity, intent, fencing_token)

    @staticmethod
    def _address(holder: str) -> str:
        address = holder_address(holder)
        if address is None:
            raise ValueError(f"holder {holder!r} names no address")
        return address

    async def _call(
        self,
        holder: str,
        method: str,
        request: Any,
        timeout: float | None,
        metadata: tuple[tuple[str, str], ...] = ((FORWARDED, "1"),),
    ) -> Any:
        call = getattr(self._stub(self._address(holder)), method)
        return await self._calls(call, request, timeout=timeout, metadata=metadata)

    async def send(
        self,
        holder: str,
        identity: str,
        message: DispatchInput,
        *,
        dispatch: bool,
        timeout: float | None,
        progress: ProgressSink | None = None,
    ) -> DispatchReceipt:
        wire = dispatch_input_to_proto(message)
        address = self._address(holder)
        link = self._link(address)
        if link is not None:
            forward = (
                svc.ForwardStreamRequest(
                    dispatch=svc.DispatchRequest(identity=identity, input=wire)
                )
                if dispatch
                else svc.ForwardStreamRequest(send=svc.SendRequest(identity=identity, input=wire))
            )
            try:
                return receipt_from_proto(await link.call(forward, timeout, progress))
            except StreamUnsupported:  # it never ran there: ask it the unary way
                self._unary_only.add(address)
                self._links.pop(address, None)
        if dispatch:
            reply = await self._call(
                holder, "Dispatch", svc.DispatchRequest(identity=identity, input=wire), timeout
            )
        else:
            reply = await self._call(
                holder, "Send", svc.SendRequest(identity=identity, input=wire), timeout
            )
        return receipt_from_proto(reply.receipt)

    async def submit_turn(
        self,
        holder: str,
        identity: str,
        message: DispatchInput,
        *,
        dispatch: bool,
        timeout: float | None,
    ) -> Ticket:
        request = svc.SubmitTurnRequest(
            identity=identity, input=dispatch_input_to_proto(message), dispatch=dispatch
        )
        reply = await self._call(holder, "SubmitTurn", request, timeout)
        return ticket_from_proto(reply.turn)

    async def watch_turn(
        self, holder: str, turn_id: str, *, progress: bool
    ) -> AsyncIterator[TurnProgress | Ticket]:
        request = svc.WatchTurnRequest(turn_id=turn_id, progress=progress)
        stub = self._stub(self._address(holder))
        call: Any = stub.WatchTurn(request, metadata=((FORWARDED, "1"),))  # an aio call
        try:
            async for item in call:
                if item.HasField("turn"):
                    yield ticket_from_proto(item.turn)
                elif item.HasField("progress"):
                    event = progress_from_proto(item.progress)
                    if event is not None:
                        yield event
        except grpc.RpcError as err:
            raise self._calls.decode(err) from None
        finally:
            call.cancel()

    async def status(self, holder: str, identity: str, timeout: float | None) -> IdentityStatus:
        reply = await self._call(
            holder, "GetIdentityStatus", svc.GetIdentityStatusRequest(identity=identity), timeout
        )
        return status_from_proto(reply.status)

    async def command(
        self,
        holder: str,
        command: str,
        identity: str,
        *,
        request_id: str = "",
        timeout: float | None,
    ) -> IdentityStatus:
        """An operator command (suspend, resume, retire, reset) run by the owner."""
        method, request_type = _COMMANDS[command]
        request = request_type(identity=identity)
        if request_id:
            request.request_id = request_id
        reply = await self._call(holder, method, request, timeout)
        return status_from_proto(reply.status)

    async def local_statuses(
        self, holder: str, after: str, limit: int, timeout: float | None
    ) -> tuple[list[IdentityStatus], bool]:
        """One page of what a replica hosts itself (it does not fan out in turn)."""
        reply = await self._call(
            holder,
            "ListIdentityStatuses",
            svc.ListIdentityStatusesRequest(
                page_size=limit, page_token=status_page_token(after) if after else ""
            ),
            timeout,
            metadata=((FORWARDED, "1"), (LOCAL_ONLY, "1")),
        )
        return [status_from_proto(s) for s in reply.statuses], bool(reply.next_page_token)

    async def close(self) -> None:
        for link in self._links.values():
            await link.close()
        self._links.clear()
        for channel, _stub in self._channels.values():
            await channel.close()
        self._channels.clear()
        for channel, task in list(self._evicted.items()):
            await channel.close()  # no more grace: cancels what is left in flight
            await asyncio.gather(task, return_exceptions=True)
