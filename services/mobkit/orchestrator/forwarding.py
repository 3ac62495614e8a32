"""Routing: find the replica that owns an identity, then forward the call to it, or
wait for an owner until the call's deadline. Every call that may land on a replica
not hosting the identity (turns, status, operator commands) goes through here; the
gRPC calls themselves are ``routing.Router``'s."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from mobkit.core.errors import BackendUnavailable, MobKitError, NotActive
from mobkit.core.types import DispatchInput, DispatchReceipt, IdentityStatus
from mobkit.orchestrator.replica import PEER_CALL_TIMEOUT, ROUTE_POLL, Replica, S
from mobkit.orchestrator.slot import IdentitySlot
from mobkit.runtime.sdk import ProgressSink

STATUS_TIMEOUT = 5.0  # s for an owner to answer a status question


class Forwarding:
    def __init__(self, r: Replica) -> None:
        self.r = r

    async def owner_elsewhere(self, slot: IdentitySlot, *, forwarded: bool) -> str | None:
        """The replica that hosts ``slot``'s identity when another one does. None when
        this replica answers itself: it holds the lease, the call was forwarded to it
        already (never twice), or it runs alone."""
        if slot.grant is not None or forwarded or self.r.fleet is None:
            return None
        return self._other(await self.r.fleet.owner(slot.identity))

    def _other(self, holder: str | None) -> str | None:
        return holder if holder is not None and holder != self.r.instance else None

    async def command(
        self, identity: str, command: str, forwarded: bool, request_id: str = ""
    ) -> IdentityStatus | None:
        """When another replica hosts the identity, the command runs there."""
        holder = await self.owner_elsewhere(self.r.slot(identity), forwarded=forwarded)
        if holder is None or self.r.fleet is None:
            return None
        return await self.r.fleet.command(
            holder, command, identity, request_id=request_id, timeout=PEER_CALL_TIMEOUT
        )

    async def status(self, holder: str, identity: str) -> IdentityStatus:
        assert self.r.fleet is not None
        return await self.r.fleet.status(holder, identity, timeout=STATUS_TIMEOUT)

    async def claimed_elsewhere(self, identity: str) -> IdentityStatus | None:
        """After a resume this replica could not take (fair share), wait a little for
        the peer whose claim loop the cleared intent woke up."""
        if self.r.fleet is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.r.lease_ttl.total_seconds() + 2
        while loop.time() < deadline:
            holder = self._other(await self.r.fleet.owner(identity))
            if holder is not None:
                with contextlib.suppress(MobKitError, ValueError):
                    status = await self.status(holder, identity)
                    if status.state is S.ACTIVE:
                        return status
            await asyncio.sleep(ROUTE_POLL)
        return None

    async def deliver(
        self,
        slot: IdentitySlot,
        message: DispatchInput,
        here: Callable[[], Awaitable[DispatchReceipt | None]],
        *,
        dispatch: bool,
        forwarded: bool,
        timeout: float | None,
        progress: ProgressSink | None = None,
    ) -> DispatchReceipt:
        """Run the turn ``here`` if this replica hosts the identity (None: not Active
        here); otherwise forward it to the owner (``progress`` then hears the owner's
        reports). Between owners (a failover, a drain,
        or an activation in progress here) the call waits, bounded by its deadline
        (default: one lease TTL plus 2 s), then fails NOT_ACTIVE with
        ``retry_after_ms``."""
        loop = asyncio.get_running_loop()
        wait = timeout if timeout is not None else self.r.lease_ttl.total_seconds() + 2
        deadline = loop.time() + wait
        while True:
            if slot.grant is not None:
                receipt = await here()
                if receipt is not None:
                    return receipt
                if slot.grant is not None and slot.state is S.SUSPENDED:
                    raise NotActive(slot.identity, slot.state.value)
            # With a grant but not Active, the identity is being activated here (its
            # lease acquired, its session not built yet): wait for it like for a new
            # owner, instead of failing NOT_ACTIVE while it is almost ready.
            if slot.grant is None:
                if forwarded or self.r.fleet is None:
                    raise NotActive(slot.identity, slot.state.value)
                holder: str | None = None
                try:
                    # A remembered owner saves a lookup per turn; one that turned out
                    # stale (it answers NOT_ACTIVE, or not at all) is forgotten below.
                    holder = await self.r.fleet.owner(slot.identity, recent=True)
                    if self._other(holder) is not None:
                        assert holder is not None
                        return await self.r.fleet.send(
                            holder,
                            slot.identity,
                            message,
                            dispatch=dispatch,
                            timeout=max(0.1, deadline - loop.time()),
                            progress=progress,
                        )
                    self.r.fleet.forget_owner(slot.identity)  # none, or this replica
                except (NotActive, BackendUnavailable):
                    # The owner is gone or going: ask afresh, wait for the next one.
                    self.r.fleet.forget_owner(slot.identity)
                if holder is None and (slot.retired or slot.state in (S.BROKEN, S.SUSPENDED)):
                    raise NotActive(slot.identity, slot.state.value)
            if loop.time() + ROUTE_POLL >= deadline:
                retry_ms = int(self.r.lease_ttl.total_seconds() * 1000 / 3)
                raise NotActive(slot.identity, "between_owners", retry_after_ms=retry_ms)
            await asyncio.sleep(ROUTE_POLL)
