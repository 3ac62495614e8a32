"""``AsyncMobKit``: the asyncio facade over a MobKit suite.

::

    async with AsyncMobKit("127.0.0.1:7700") as mk:
        receipt = await mk.send("coordinator", "remember the milk", idempotency_key="k1")
        async for status in mk.list_statuses(state=IdentityLifecycleState.ACTIVE):
            print(status.identity, status.lease.fencing_token if status.lease else None)
        async for event in mk.events(after_seq=0):  # resumes across restarts
            print(event.cursor, event.kind)

The orchestrator's operations are methods of the facade; each provider service
has its own object under :attr:`AsyncMobKit.providers` (``mk.providers.lease``,
...). ``mobkit up`` and ``mobkit serve all`` serve every service on one address;
give ``provider_addresses`` when providers run elsewhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc

from mobkit.client.channel import open_channel
from mobkit.client.events import DEFAULT_RECONNECT_TIMEOUT, EventStream, OnReconnect
from mobkit.client.flows import AsyncFlowClient
from mobkit.client.options import ClientOptions, RetryPolicy
from mobkit.client.orchestrator import AsyncOrchestratorClient
from mobkit.client.providers import (
    AsyncContinuityClient,
    AsyncCustomizerClient,
    AsyncLeaseClient,
    AsyncRosterClient,
    AsyncRuntimeClient,
    AsyncTopologyClient,
)
from mobkit.client.retry import RetryInterceptor
from mobkit.client.turns import AsyncTurnClient
from mobkit.client.types import EventPage, Page, ReconcileResult
from mobkit.core.types import (
    DispatchOrigin,
    DispatchReceipt,
    IdentityLifecycleState,
    IdentityStatus,
    ManagedPeerEdge,
    MobStructuralEventEnvelope,
)
from mobkit.modules.domain import ModuleStatus
from mobkit.security.tls import ClientTLS
from mobkit.topology.domain import EdgePage

PROVIDERS = ("lease", "continuity", "roster", "topology", "customizer", "runtime")


def build_options(
    address: str | None = None,
    *,
    options: ClientOptions | None = None,
    tls: ClientTLS | None = None,
    token: str | None = None,
    timeout: float | None = None,
    retry: RetryPolicy | None = None,
) -> ClientOptions:
    """``options`` (default: from the environment) with the given fields replaced."""
    base = options or ClientOptions.from_env()
    changes: dict[str, Any] = {
        "address": address,
        "tls": tls,
        "token": token,
        "timeout": timeout,
        "retry": retry,
    }
    return dataclasses.replace(base, **{k: v for k, v in changes.items() if v is not None})


class _Channels:
    """One channel per address, all with the same options; closed together."""

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self._open: dict[str, tuple[grpc.aio.Channel, RetryInterceptor]] = {}

    def get(self, address: str | None = None) -> grpc.aio.Channel:
        return self.entry(address)[0]

    def entry(self, address: str | None = None) -> tuple[grpc.aio.Channel, RetryInterceptor]:
        key = address or self.options.address
        if key not in self._open:
            self._open[key] = open_channel(self.options, key)
        return self._open[key]

    async def close(self) -> None:
        opened, self._open = list(self._open.values()), {}
        for channel, _ in opened:
            await channel.close()


class AsyncProviders:
    """The provider services, one client object each, created on first use."""

    def __init__(self, channels: _Channels, addresses: Mapping[str, str]) -> None:
        unknown = set(addresses) - set(PROVIDERS)
        if unknown:
            raise ValueError(f"unknown provider(s) {sorted(unknown)}; expected {PROVIDERS}")
        self._channels = channels
        self._addresses = dict(addresses)
        self._clients: dict[str, Any] = {}

    def _channel(self, name: str) -> grpc.aio.Channel:
        return self._channels.get(self._addresses.get(name))

    def _client(self, name: str, cls: type[Any]) -> Any:
        if name not in self._clients:
            self._clients[name] = cls(self._channel(name), timeout=None)
        return self._clients[name]

    @property
    def lease(self) -> AsyncLeaseClient:
        client: AsyncLeaseClient = self._client("lease", AsyncLeaseClient)
        return client

    @property
    def continuity(self) -> AsyncContinuityClient:
        client: AsyncContinuityClient = self._client("continuity", AsyncContinuityClient)
        return client

    @property
    def roster(self) -> AsyncRosterClient:
        client: AsyncRosterClient = self._client("roster", AsyncRosterClient)
        return client

    @property
    def topology(self) -> AsyncTopologyClient:
        client: AsyncTopologyClient = self._client("topology", AsyncTopologyClient)
        return client

    @property
    def customizer(self) -> AsyncCustomizerClient:
        client: AsyncCustomizerClient = self._client("customizer", AsyncCustomizerClient)
        return client

    @property
    def runtime(self) -> AsyncRuntimeClient:
        client: AsyncRuntimeClient = self._client("runtime", AsyncRuntimeClient)
        return client


class AsyncMobKit:
    """An asyncio client for a MobKit suite (see the module docstring).

    ``address`` defaults to ``MOBKIT_ADDR`` or ``127.0.0.1:7700``; the other
    settings come from ``options`` (default :meth:`ClientOptions.from_env`) with
    the keyword arguments replacing its fields. Create it inside a running event
    loop and ``await close()`` it (or use ``async with``).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        options: ClientOptions | None = None,
        tls: ClientTLS | None = None,
        token: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        provider_addresses: Mapping[str, str] | None = None,
    ) -> None:
        self.options = build_options(
            address, options=options, tls=tls, token=token, timeout=timeout, retry=retry
        )
        self._channels = _Channels(self.options)
        channel, self._retry = self._channels.entry()
        self.orchestrator = AsyncOrchestratorClient(channel, retry=self.options.retry)
        self.flows = AsyncFlowClient(channel)
        self.turns = AsyncTurnClient(channel)
        """Streamed turns and turn tickets; also as ``send_stream``, ``submit_turn``,
        ``get_turn``, ``watch_turn`` and ``wait_for_turn`` here."""
        self.send_stream = self.turns.send_stream
        self.submit_turn = self.turns.submit_turn
        self.get_turn = self.turns.get_turn
        self.watch_turn = self.turns.watch_turn
        self.wait_for_turn = self.turns.wait_for_turn
        """Flow runs (FlowService, served beside the orchestrator)."""
        self.providers = AsyncProviders(self._channels, provider_addresses or {})

    @property
    def retries(self) -> int:
        """UNAVAILABLE retries made so far on the orchestrator's channel."""
        return self._retry.retries

    async def close(self) -> None:
        await self._channels.close()

    async def __aenter__(self) -> AsyncMobKit:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the orchestrator's operations ------------------------------------------------

    async def send(
        self,
        identity: str,
        text: str,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        timeout: float | None = None,
    ) -> DispatchReceipt:
        """Run a turn on an addressable identity; retried on UNAVAILABLE only with a key."""
        return await self.orchestrator.send(
            identity,
            text,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
            timeout=timeout,
        )

    async def dispatch(
        self,
        identity: str,
        text: str,
        *,
        origin: DispatchOrigin = DispatchOrigin.SYSTEM,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        timeout: float | None = None,
    ) -> DispatchReceipt:
        """As :meth:`send`, but internal-only identities are reachable too."""
        return await self.orchestrator.dispatch(
            identity,
            text,
            origin=origin,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
            timeout=timeout,
        )

    async def status(self, identity: str, *, timeout: float | None = None) -> IdentityStatus:
        return await self.orchestrator.status(identity, timeout=timeout)

    def list_statuses(
        self,
        *,
        state: IdentityLifecycleState | None = None,
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> AsyncIterator[IdentityStatus]:
        """Every matching status, ordered by identity (pages fetched as needed)."""
        return self.orchestrator.list_statuses(
            state=state, labels=labels, page_size=page_size, timeout=timeout
        )

    async def list_statuses_page(
        self,
        *,
        state: IdentityLifecycleState | None = None,
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Page[IdentityStatus]:
        return await self.orchestrator.list_statuses_page(
            state=state, labels=labels, page_size=page_size, page_token=page_token, timeout=timeout
        )

    async def reconcile(self, *, timeout: float | None = None) -> ReconcileResult:
        return await self.orchestrator.reconcile(timeout=timeout)

    async def reset(
        self, identity: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> IdentityStatus:
        return await self.orchestrator.reset(identity, request_id=request_id, timeout=timeout)

    async def retire(self, identity: str, *, timeout: float | None = None) -> IdentityStatus:
        return await self.orchestrator.retire(identity, timeout=timeout)

    async def suspend(self, identity: str, *, timeout: float | None = None) -> IdentityStatus:
        return await self.orchestrator.suspend(identity, timeout=timeout)

    async def resume(self, identity: str, *, timeout: float | None = None) -> IdentityStatus:
        return await self.orchestrator.resume(identity, timeout=timeout)

    def events(
        self,
        after_seq: int = 0,
        *,
        reconnect_timeout: float | None = DEFAULT_RECONNECT_TIMEOUT,
        on_reconnect: OnReconnect | None = None,
    ) -> EventStream:
        """Follow structural events after ``after_seq``; resumes from its cursor after
        a disconnect or a server restart, without gaps or duplicates."""
        return self.orchestrator.events(
            after_seq, reconnect_timeout=reconnect_timeout, on_reconnect=on_reconnect
        )

    def list_events(
        self, after_seq: int = 0, *, page_size: int = 0, timeout: float | None = None
    ) -> AsyncIterator[MobStructuralEventEnvelope]:
        """The events after ``after_seq`` that exist now (does not wait for more)."""
        return self.orchestrator.list_events(after_seq, page_size=page_size, timeout=timeout)

    async def list_events_page(
        self,
        after_seq: int = 0,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> EventPage:
        return await self.orchestrator.list_events_page(
            after_seq, page_size=page_size, page_token=page_token, timeout=timeout
        )

    async def modules(self, *, timeout: float | None = None) -> list[ModuleStatus]:
        """The orchestrator's modules (MCP tool servers) and their health."""
        return await self.orchestrator.modules(timeout=timeout)

    def topology(
        self, identity: str | None = None, *, page_size: int = 0, timeout: float | None = None
    ) -> AsyncIterator[ManagedPeerEdge]:
        """The managed peer edges in force (those touching ``identity`` when given)."""
        return self.orchestrator.topology(identity, page_size=page_size, timeout=timeout)

    async def topology_page(
        self,
        identity: str | None = None,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> EdgePage:
        return await self.orchestrator.topology_page(
            identity, page_size=page_size, page_token=page_token, timeout=timeout
        )
