"""``MobKit``: the blocking facade, for scripts and code without an event loop.

::

    with MobKit("127.0.0.1:7700") as mk:
        print(mk.send("coordinator", "remember the milk").output)
        for event in mk.events(after_seq=0):
            print(event.cursor, event.kind)

It drives an :class:`~mobkit.client.aio.AsyncMobKit` on a private event loop
thread, so both flavours share every behaviour (deadlines, retries, typed errors,
resuming event streams). Methods and arguments are the same, without ``await``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from mobkit.client._loop import LoopThread
from mobkit.client.aio import AsyncMobKit
from mobkit.client.events import DEFAULT_RECONNECT_TIMEOUT, EventStream, OnReconnect
from mobkit.client.flows import FlowClient
from mobkit.client.options import ClientOptions, RetryPolicy
from mobkit.client.providers import (
    AsyncContinuityClient,
    AsyncCustomizerClient,
    AsyncLeaseClient,
    AsyncRosterClient,
    AsyncRuntimeClient,
    AsyncTopologyClient,
)
from mobkit.client.turns import TurnClient
from mobkit.client.types import EventPage, Page, ReconcileResult
from mobkit.continuity.domain import LoadedSnapshot, ResolveEntry, SessionRecord
from mobkit.core.identity import FencingToken
from mobkit.core.types import (
    AgentBuildContext,
    AgentBuildDraft,
    Checkpoint,
    ContinuityHealth,
    ContinuityRecord,
    DispatchInput,
    DispatchOrigin,
    DispatchReceipt,
    DurableAgentSpec,
    IdentityLifecycleState,
    IdentityStatus,
    JsonValue,
    LeaseAcquireResult,
    LeaseGrant,
    LeaseRenewResult,
    ManagedPeerEdge,
    MobStructuralEventEnvelope,
    RosterContext,
    SessionSnapshot,
    TopologyContext,
)
from mobkit.lease.domain import Lease
from mobkit.roster.domain import RosterSnapshot
from mobkit.runtime.domain import SessionInfo, TurnOutcome
from mobkit.security.tls import ClientTLS
from mobkit.topology.domain import EdgePage

T = TypeVar("T")


class SyncEventStream:
    """A blocking iterator over an :class:`~mobkit.client.events.EventStream`."""

    def __init__(self, loop: LoopThread, stream: EventStream) -> None:
        self._stream = stream
        self._items = loop.iterate(stream)

    @property
    def cursor(self) -> int:
        """Cursor of the last event returned (resume point)."""
        return self._stream.cursor

    @property
    def reconnects(self) -> int:
        return self._stream.reconnects

    def __iter__(self) -> SyncEventStream:
        return self

    def __next__(self) -> MobStructuralEventEnvelope:
        return next(self._items)

    def close(self) -> None:
        self._items.close()

    def __enter__(self) -> SyncEventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Sync:
    def __init__(self, loop: LoopThread, target: Any) -> None:
        self._loop = loop
        self._a = target


class LeaseClient(_Sync):
    """Blocking ``LeaseService`` client (see :class:`~mobkit.client.providers.AsyncLeaseClient`)."""

    _a: AsyncLeaseClient

    def acquire_leases(
        self, identities: Sequence[str], runtime_instance: str, ttl: timedelta
    ) -> list[LeaseAcquireResult]:
        return self._loop.run(self._a.acquire_leases(identities, runtime_instance, ttl))

    def renew_leases(
        self, grants: Sequence[LeaseGrant], runtime_instance: str | None = None
    ) -> list[LeaseRenewResult]:
        return self._loop.run(self._a.renew_leases(grants, runtime_instance))

    def release_leases(
        self, grants: Sequence[LeaseGrant], runtime_instance: str | None = None
    ) -> None:
        self._loop.run(self._a.release_leases(grants, runtime_instance))

    def list_leases(self, page_size: int = 0, page_token: str = "") -> tuple[list[Lease], str]:
        return self._loop.run(self._a.list_leases(page_size, page_token))

    def leases(self, *, page_size: int = 0) -> Iterator[Lease]:
        return self._loop.iterate(self._a.leases(page_size=page_size))


class ContinuityClient(_Sync):
    """Blocking ``ContinuityStoreService`` client."""

    _a: AsyncContinuityClient

    def resolve_many(self, identities: Sequence[str]) -> list[ResolveEntry]:
        return self._loop.run(self._a.resolve_many(identities))

    def load_session_snapshot(self, session_id: str) -> LoadedSnapshot | None:
        return self._loop.run(self._a.load_session_snapshot(session_id))

    def save_session_snapshot(self, checkpoint: Checkpoint) -> str:
        return self._loop.run(self._a.save_session_snapshot(checkpoint))

    def upsert_continuity_record(
        self, record: ContinuityRecord, fencing_token: FencingToken
    ) -> None:
        self._loop.run(self._a.upsert_continuity_record(record, fencing_token))

    def delete_continuity_record(self, identity: str, fencing_token: FencingToken) -> None:
        self._loop.run(self._a.delete_continuity_record(identity, fencing_token))

    def delete_session_snapshot_if_current_revision(
        self, session_id: str, expected_current_revision: str
    ) -> bool:
        return self._loop.run(
            self._a.delete_session_snapshot_if_current_revision(
                session_id, expected_current_revision
            )
        )

    def resolve_record_by_session(self, session_id: str) -> SessionRecord | None:
        return self._loop.run(self._a.resolve_record_by_session(session_id))

    def health(self, identity: str | None = None) -> ContinuityHealth:
        return self._loop.run(self._a.health(identity))


class RosterClient(_Sync):
    """Blocking ``RosterService`` client."""

    _a: AsyncRosterClient

    def get_roster(self, context: RosterContext | None = None) -> RosterSnapshot:
        return self._loop.run(self._a.get_roster(context))

    def roster(self, context: RosterContext | None = None) -> list[DurableAgentSpec]:
        return self._loop.run(self._a.roster(context))

    def watch_roster(self, context: RosterContext | None = None) -> Iterator[RosterSnapshot]:
        return self._loop.iterate(self._a.watch_roster(context))


class TopologyClient(_Sync):
    """Blocking ``TopologyService`` client."""

    _a: AsyncTopologyClient

    def compute_edges_page(
        self,
        target_identities: Sequence[str],
        context: TopologyContext,
        page_size: int = 0,
        page_token: str = "",
    ) -> EdgePage:
        return self._loop.run(
            self._a.compute_edges_page(target_identities, context, page_size, page_token)
        )

    def compute_edges(
        self, target_identities: Sequence[str], context: TopologyContext
    ) -> list[ManagedPeerEdge]:
        return self._loop.run(self._a.compute_edges(target_identities, context))

    def edges(
        self, target_identities: Sequence[str], context: TopologyContext, *, page_size: int = 0
    ) -> Iterator[ManagedPeerEdge]:
        return self._loop.iterate(self._a.edges(target_identities, context, page_size=page_size))


class CustomizerClient(_Sync):
    """Blocking ``AgentCustomizerService`` client."""

    _a: AsyncCustomizerClient

    def customize_build(
        self, context: AgentBuildContext, spec: DurableAgentSpec, draft: AgentBuildDraft
    ) -> AgentBuildDraft:
        return self._loop.run(self._a.customize_build(context, spec, draft))

    def after_create(
        self, identity: str, session_id: str, context: JsonValue | None = None
    ) -> None:
        self._loop.run(self._a.after_create(identity, session_id, context))


class RuntimeClient(_Sync):
    """Blocking ``AgentRuntimeService`` client."""

    _a: AsyncRuntimeClient

    def create_session(
        self,
        identity: str,
        profile: str,
        draft: AgentBuildDraft,
        *,
        session_id: str | None = None,
        agent_runtime_id: str | None = None,
    ) -> SessionInfo:
        return self._loop.run(
            self._a.create_session(
                identity, profile, draft, session_id=session_id, agent_runtime_id=agent_runtime_id
            )
        )

    def resume_session(
        self,
        identity: str,
        profile: str,
        session_id: str,
        agent_runtime_id: str,
        snapshot: SessionSnapshot,
        draft: AgentBuildDraft,
    ) -> SessionInfo:
        return self._loop.run(
            self._a.resume_session(identity, profile, session_id, agent_runtime_id, snapshot, draft)
        )

    def run_turn(
        self, session_id: str, message: DispatchInput, *, peers: tuple[str, ...] = ()
    ) -> TurnOutcome:
        return self._loop.run(self._a.run_turn(session_id, message, peers=peers))

    def export_snapshot(self, session_id: str) -> SessionSnapshot:
        return self._loop.run(self._a.export_snapshot(session_id))

    def close_session(self, session_id: str) -> None:
        self._loop.run(self._a.close_session(session_id))


class Providers:
    """The provider services of a :class:`MobKit`, one blocking client each."""

    def __init__(self, loop: LoopThread, mk: AsyncMobKit) -> None:
        p = mk.providers
        self.lease = LeaseClient(loop, p.lease)
        self.continuity = ContinuityClient(loop, p.continuity)
        self.roster = RosterClient(loop, p.roster)
        self.topology = TopologyClient(loop, p.topology)
        self.customizer = CustomizerClient(loop, p.customizer)
        self.runtime = RuntimeClient(loop, p.runtime)


class MobKit:
    """Blocking client for a MobKit suite; arguments as :class:`AsyncMobKit`."""

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
        self._loop = LoopThread()
        try:
            self._async = self._loop.run(
                _make(
                    address,
                    options=options,
                    tls=tls,
                    token=token,
                    timeout=timeout,
                    retry=retry,
                    provider_addresses=provider_addresses,
                )
            )
            # Channels must be opened on the loop that uses them.
            self.providers = self._loop.run(_providers(self._loop, self._async))
            self.flows = FlowClient(self._loop, self._async.flows)
            self.turns = TurnClient(self._loop, self._async.turns)
            """Streamed turns and turn tickets: the blocking twin of ``AsyncMobKit.turns``."""
            """Flow runs (FlowService): the blocking twin of ``AsyncMobKit.flows``."""
        except BaseException:
            self._loop.close()
            raise
        self.options = self._async.options

    @property
    def retries(self) -> int:
        return self._async.retries

    def close(self) -> None:
        if not self._loop.loop.is_closed():
            self._loop.run(self._async.close())
            self._loop.close()

    def __enter__(self) -> MobKit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(
        self,
        identity: str,
        text: str,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        timeout: float | None = None,
    ) -> DispatchReceipt:
        return self._loop.run(
            self._async.send(
                identity,
                text,
                idempotency_key=idempotency_key,
                correlation_id=correlation_id,
                timeout=timeout,
            )
        )

    def dispatch(
        self,
        identity: str,
        text: str,
        *,
        origin: DispatchOrigin = DispatchOrigin.SYSTEM,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        timeout: float | None = None,
    ) -> DispatchReceipt:
        return self._loop.run(
            self._async.dispatch(
                identity,
                text,
                origin=origin,
                idempotency_key=idempotency_key,
                correlation_id=correlation_id,
                timeout=timeout,
            )
        )

    def status(self, identity: str, *, timeout: float | None = None) -> IdentityStatus:
        return self._loop.run(self._async.status(identity, timeout=timeout))

    def list_statuses(
        self,
        *,
        state: IdentityLifecycleState | None = None,
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> Iterator[IdentityStatus]:
        return self._loop.iterate(
            self._async.list_statuses(
                state=state, labels=labels, page_size=page_size, timeout=timeout
            )
        )

    def list_statuses_page(
        self,
        *,
        state: IdentityLifecycleState | None = None,
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Page[IdentityStatus]:
        return self._loop.run(
            self._async.list_statuses_page(
                state=state,
                labels=labels,
                page_size=page_size,
                page_token=page_token,
                timeout=timeout,
            )
        )

    def reconcile(self, *, timeout: float | None = None) -> ReconcileResult:
        return self._loop.run(self._async.reconcile(timeout=timeout))

    def reset(
        self, identity: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> IdentityStatus:
        return self._loop.run(self._async.reset(identity, request_id=request_id, timeout=timeout))

    def retire(self, identity: str, *, timeout: float | None = None) -> IdentityStatus:
        return self._loop.run(self._async.retire(identity, timeout=timeout))

    def suspend(self, identity: str, *, timeout: float | None = None) -> IdentityStatus:
        return self._loop.run(self._async.suspend(identity, timeout=timeout))

    def resume(self, identity: str, *, timeout: float | None = None) -> IdentityStatus:
        return self._loop.run(self._async.resume(identity, timeout=timeout))

    def events(
        self,
        after_seq: int = 0,
        *,
        reconnect_timeout: float | None = DEFAULT_RECONNECT_TIMEOUT,
        on_reconnect: OnReconnect | None = None,
    ) -> SyncEventStream:
        stream = self._async.events(
            after_seq, reconnect_timeout=reconnect_timeout, on_reconnect=on_reconnect
        )
        return SyncEventStream(self._loop, stream)

    def list_events(
        self, after_seq: int = 0, *, page_size: int = 0, timeout: float | None = None
    ) -> Iterator[MobStructuralEventEnvelope]:
        return self._loop.iterate(
            self._async.list_events(after_seq, page_size=page_size, timeout=timeout)
        )

    def list_events_page(
        self,
        after_seq: int = 0,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> EventPage:
        return self._loop.run(
            self._async.list_events_page(
                after_seq, page_size=page_size, page_token=page_token, timeout=timeout
            )
        )

    def topology(
        self, identity: str | None = None, *, page_size: int = 0, timeout: float | None = None
    ) -> Iterator[ManagedPeerEdge]:
        return self._loop.iterate(
            self._async.topology(identity, page_size=page_size, timeout=timeout)
        )

    def topology_page(
        self,
        identity: str | None = None,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> EdgePage:
        return self._loop.run(
            self._async.topology_page(
                identity, page_size=page_size, page_token=page_token, timeout=timeout
            )
        )


async def _make(address: str | None, **kwargs: Any) -> AsyncMobKit:
    return AsyncMobKit(address, **kwargs)


async def _providers(loop: LoopThread, mk: AsyncMobKit) -> Providers:
    return Providers(loop, mk)
