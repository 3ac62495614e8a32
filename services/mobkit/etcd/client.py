"""Asyncio etcd v3 client on grpc.aio and stubs generated from etcd's own API protos.

Performance-critical callers use the raw stubs (``client.kv.Txn(req)``); the typed
helpers cover the rest. Every unary call made through this client's stubs, raw stubs
included, goes through one wrapper (:class:`mobkit.etcd.stubs.Unary`) that

* counts it in :attr:`EtcdClient.round_trips` (benchmarks and metrics read it),
* applies the client's deadline when the caller gave none,
* attaches the auth token and re-authenticates once when etcd rejects it as stale,
* turns :class:`grpc.aio.AioRpcError` into :class:`~mobkit.etcd.errors.EtcdError`.

Reads (Range, Status, LeaseTimeToLive, ...) are retried on ``UNAVAILABLE`` by gRPC on
another member. Writes (Put, DeleteRange, Txn, LeaseGrant, ...) are never retried: when
a member dies under a write, its outcome is unknown, so it fails with
:class:`~mobkit.etcd.errors.EtcdUnavailable` and the caller re-reads or retries under
its own compare guards. Later calls avoid the dead member.

Streams (watch, keepalive) are long-lived and have no deadline; raw stream callers pass
``metadata=client.auth_metadata()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any

import grpc

from mobkit.etcd.channel import EtcdTLS, open_channel
from mobkit.etcd.errors import EtcdError, EtcdLeaseNotFound, EtcdUnavailable, map_rpc_error
from mobkit.etcd.ops import Key, prefix_end, range_request, to_bytes
from mobkit.etcd.stubs import Stub
from mobkit.etcd.watch import watch_events
from mobkit.gen.etcd.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from mobkit.gen.etcd.api.mvccpb import kv_pb2

__all__ = ["EtcdClient", "EtcdTLS", "map_rpc_error"]

log = logging.getLogger(__name__)


class _KeepAliveStream:
    """One shared LeaseKeepAlive stream; requests and replies are paired under a lock.

    etcd answers keepalives on a stream in request order, so a lock keeps pairing exact.
    A broken stream (member died) is replaced once per call; keepalive is idempotent.
    """

    def __init__(self, client: EtcdClient) -> None:
        self._client = client
        self._call: Any = None
        self._lock = asyncio.Lock()

    def _reset(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None

    async def once(self, lease_id: int, timeout: float) -> int:
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                await self._lock.acquire()
        except TimeoutError:
            raise self._timed_out(timeout) from None
        try:
            async with asyncio.timeout_at(deadline):
                return await self._exchange(lease_id)
        except TimeoutError:
            self._reset()
            raise self._timed_out(timeout) from None
        except BaseException:
            # Cancelled mid-exchange: a reply may still be in flight, so pairing on this
            # stream is no longer exact; the next call opens a fresh one.
            self._reset()
            raise
        finally:
            self._lock.release()

    @staticmethod
    def _timed_out(timeout: float) -> EtcdUnavailable:
        return EtcdUnavailable(
            f"LeaseKeepAlive: no reply within {timeout}s", code="DEADLINE_EXCEEDED"
        )

    async def _exchange(self, lease_id: int) -> int:
        for attempt in range(2):
            if self._call is None:
                self._call = self._client.lease.LeaseKeepAlive(
                    metadata=self._client.auth_metadata(),
                    wait_for_ready=self._client.wait_for_ready,
                )
            try:
                await self._call.write(rpc_pb2.LeaseKeepAliveRequest(ID=lease_id))
                reply = await self._call.read()
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as err:
                self._reset()
                if attempt == 0:
                    continue
                if isinstance(err, grpc.aio.AioRpcError):
                    raise map_rpc_error(err, "LeaseKeepAlive") from None
                raise EtcdUnavailable("LeaseKeepAlive: stream closed") from None
            if reply is grpc.aio.EOF:
                self._reset()
                if attempt == 0:
                    continue
                raise EtcdUnavailable("LeaseKeepAlive: stream closed")
            return int(reply.TTL)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._reset()


class _Watch:
    """``client.watch(key, ...)`` is the resilient event iterator; ``client.watch.Watch``
    is the raw bidi stub method, as on :attr:`EtcdClient.watch_stub`."""

    def __init__(self, client: EtcdClient, stub: Any) -> None:
        self._client = client
        self.Watch = stub.Watch

    def __call__(
        self,
        key: Key,
        range_end: Key | None = None,
        *,
        start_revision: int | None = None,
        prev_kv: bool = False,
        deletes_only: bool = False,
    ) -> AsyncIterator[kv_pb2.Event]:
        """Events on ``[key, range_end)`` from ``start_revision`` (default: from now);
        ``deletes_only`` has etcd leave out puts (and lease expiries are deletes).

        The iterator survives member failures: it re-watches from the last delivered
        revision + 1, so no event is lost or repeated. If that history was compacted it
        raises :class:`EtcdCompacted`. Pass ``start_revision`` (a read's header revision
        + 1) so that no event between the read and the watch start is missed.
        """
        return watch_events(
            self._client,
            key,
            range_end,
            start_revision=start_revision,
            prev_kv=prev_kv,
            deletes_only=deletes_only,
        )


class EtcdClient:
    """An etcd v3 client. Create it with :meth:`connect`; close it with :meth:`close`."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        tls: EtcdTLS | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
        keepalive_time: float = 6.0,
        keepalive_timeout: float = 3.0,
        wait_for_ready: bool = True,
    ) -> None:
        """Internal: use :meth:`connect`, which also authenticates (needs a running loop)."""
        if (username is None) != (password is None):
            raise ValueError("username and password go together")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready
        #: Unary etcd RPCs issued (plus keepalive_once exchanges), retries not included.
        self.round_trips = 0
        self._username = username
        self._password = password
        self._token: str | None = None
        self._auth_lock = asyncio.Lock()
        self._channel = open_channel(
            self.endpoints,
            tls=tls,
            keepalive_time=keepalive_time,
            keepalive_timeout=keepalive_timeout,
        )
        channel = self._channel
        self.kv: Any = Stub(self, rpc_pb2_grpc.KVStub(channel), "KV")
        self.lease: Any = Stub(self, rpc_pb2_grpc.LeaseStub(channel), "Lease")
        self.watch_stub = rpc_pb2_grpc.WatchStub(channel)
        self.watch = _Watch(self, self.watch_stub)
        self.maintenance: Any = Stub(self, rpc_pb2_grpc.MaintenanceStub(channel), "Maintenance")
        self.cluster: Any = Stub(self, rpc_pb2_grpc.ClusterStub(channel), "Cluster")
        self.auth: Any = Stub(self, rpc_pb2_grpc.AuthStub(channel), "Auth")
        self._keepalive = _KeepAliveStream(self)
        self._closed = False

    @classmethod
    async def connect(
        cls,
        endpoints: Sequence[str],
        *,
        tls: EtcdTLS | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
        keepalive_time: float = 6.0,
        keepalive_timeout: float = 3.0,
        wait_for_ready: bool = True,
    ) -> EtcdClient:
        """Open a channel to ``endpoints`` (``http://h:p``, ``https://h:p`` or ``h:p``).

        Connecting is lazy unless credentials are given: then the user authenticates now
        and a failure raises :class:`EtcdAuthError` or :class:`EtcdUnavailable`.
        ``timeout`` is the default deadline of every unary call. With ``wait_for_ready``
        (etcd's own client does the same) a call made while no member is reachable waits
        for one until its deadline instead of failing at once, which rides out a member
        restart or a leader failover; either way an outage ends in :class:`EtcdUnavailable`
        by the deadline.
        """
        client = cls(
            endpoints,
            tls=tls,
            username=username,
            password=password,
            timeout=timeout,
            keepalive_time=keepalive_time,
            keepalive_timeout=keepalive_timeout,
            wait_for_ready=wait_for_ready,
        )
        if username is not None:
            try:
                await client._reauthenticate(None)
            except BaseException:
                await client.close()
                raise
        log.debug("etcd client for %s (auth=%s)", client.endpoints, username is not None)
        return client

    prefix_end = staticmethod(prefix_end)

    # -- lifecycle -------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._keepalive.close()
        await self._channel.close()

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:  # never shows credentials
        return f"EtcdClient(endpoints={self.endpoints!r}, auth={self._username is not None})"

    # -- auth ------------------------------------------------------------------------

    def auth_metadata(self) -> tuple[tuple[str, str], ...]:
        """Metadata for calls that bypass the unary wrapper (raw streams)."""
        return (("token", self._token),) if self._token is not None else ()

    async def _reauthenticate(self, stale: str | None) -> None:
        """Fetch a new token unless another caller already replaced ``stale``."""
        async with self._auth_lock:
            if self._username is None or (stale is not None and self._token != stale):
                return
            reply = await self.auth.Authenticate(
                rpc_pb2.AuthenticateRequest(name=self._username, password=self._password or "")
            )
            self._token = reply.token

    # -- KV --------------------------------------------------------------------------

    async def range(
        self,
        key: Key,
        range_end: Key | None = None,
        *,
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        serializable: bool = False,
        timeout: float | None = None,
    ) -> rpc_pb2.RangeResponse:
        """Keys in ``[key, range_end)`` (just ``key`` without ``range_end``), key-sorted."""
        request = range_request(
            key,
            range_end,
            limit=limit,
            revision=revision,
            keys_only=keys_only,
            count_only=count_only,
            serializable=serializable,
        )
        return await self.kv.Range(request, timeout=timeout)

    async def get(self, key: Key, *, timeout: float | None = None) -> kv_pb2.KeyValue | None:
        """The key's current KeyValue, or None."""
        reply = await self.range(key, timeout=timeout)
        return reply.kvs[0] if reply.kvs else None

    async def range_prefix(
        self,
        prefix: Key,
        page_size: int = 500,
        *,
        revision: int = 0,
        keys_only: bool = False,
        timeout: float | None = None,
    ) -> AsyncIterator[kv_pb2.KeyValue]:
        """Every key under ``prefix``, ``page_size`` keys per round trip.

        All pages read the revision of the first page (or ``revision``), so the listing
        is one consistent snapshot even while writers continue.
        """
        if page_size <= 0:
            raise ValueError("page_size must be positive")
        start, end = to_bytes(prefix), prefix_end(prefix)
        while True:
            reply = await self.range(
                start,
                end,
                limit=page_size,
                revision=revision,
                keys_only=keys_only,
                timeout=timeout,
            )
            revision = revision or reply.header.revision
            for kv in reply.kvs:
                yield kv
            if not reply.more or not reply.kvs:
                return
            start = reply.kvs[-1].key + b"\0"

    async def put(
        self,
        key: Key,
        value: Key,
        *,
        lease: int = 0,
        prev_kv: bool = False,
        timeout: float | None = None,
    ) -> rpc_pb2.PutResponse:
        request = rpc_pb2.PutRequest(
            key=to_bytes(key), value=to_bytes(value), lease=lease, prev_kv=prev_kv
        )
        return await self.kv.Put(request, timeout=timeout)

    async def delete(
        self,
        key: Key,
        range_end: Key | None = None,
        *,
        prev_kv: bool = False,
        timeout: float | None = None,
    ) -> rpc_pb2.DeleteRangeResponse:
        request = rpc_pb2.DeleteRangeRequest(
            key=to_bytes(key),
            range_end=to_bytes(range_end) if range_end is not None else b"",
            prev_kv=prev_kv,
        )
        return await self.kv.DeleteRange(request, timeout=timeout)

    async def delete_prefix(self, prefix: Key, *, timeout: float | None = None) -> int:
        """Delete every key under ``prefix``; returns how many were deleted."""
        reply = await self.delete(prefix, prefix_end(prefix), timeout=timeout)
        return int(reply.deleted)

    async def txn(
        self, request: rpc_pb2.TxnRequest, *, timeout: float | None = None
    ) -> rpc_pb2.TxnResponse:
        """One atomic compare-and-swap; see :mod:`mobkit.etcd.ops` for builders."""
        return await self.kv.Txn(request, timeout=timeout)

    async def compact(
        self, revision: int, *, physical: bool = False, timeout: float | None = None
    ) -> None:
        await self.kv.Compact(
            rpc_pb2.CompactionRequest(revision=revision, physical=physical), timeout=timeout
        )

    # -- leases ----------------------------------------------------------------------

    async def grant_lease(
        self, ttl_s: int, *, lease_id: int = 0, timeout: float | None = None
    ) -> tuple[int, int]:
        """A new lease: ``(id, granted ttl in seconds)``."""
        reply = await self.lease.LeaseGrant(
            rpc_pb2.LeaseGrantRequest(TTL=ttl_s, ID=lease_id), timeout=timeout
        )
        if reply.error:
            raise EtcdError(f"LeaseGrant: {reply.error}")
        return int(reply.ID), int(reply.TTL)

    async def keepalive_once(self, lease_id: int, *, timeout: float | None = None) -> int:
        """Renew the lease once; returns its remaining TTL, ``<= 0`` when it has expired."""
        self.round_trips += 1
        return await self._keepalive.once(
            lease_id, timeout if timeout is not None else self.timeout
        )

    async def revoke_lease(self, lease_id: int, *, timeout: float | None = None) -> bool:
        """Revoke the lease (deleting its keys); False if it no longer existed."""
        try:
            await self.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=lease_id), timeout=timeout)
        except EtcdLeaseNotFound:
            return False
        return True

    async def lease_time_to_live(
        self, lease_id: int, *, keys: bool = False, timeout: float | None = None
    ) -> rpc_pb2.LeaseTimeToLiveResponse:
        """The lease's remaining ``TTL`` (``-1`` once expired), ``grantedTTL``, ``keys``."""
        return await self.lease.LeaseTimeToLive(
            rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=keys), timeout=timeout
        )

    async def leases(self, *, timeout: float | None = None) -> list[int]:
        reply = await self.lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest(), timeout=timeout)
        return [int(s.ID) for s in reply.leases]

    # -- cluster ---------------------------------------------------------------------

    async def status(
        self, *, timeout: float | None = None, wait_for_ready: bool | None = None
    ) -> rpc_pb2.StatusResponse:
        """Status of whichever member the call reached. ``wait_for_ready=False`` fails
        at once while no member can be connected to (health checks), instead of
        waiting for one until the deadline."""
        return await self.maintenance.Status(
            rpc_pb2.StatusRequest(), timeout=timeout, wait_for_ready=wait_for_ready
        )

    async def member_list(self, *, timeout: float | None = None) -> rpc_pb2.MemberListResponse:
        return await self.cluster.MemberList(rpc_pb2.MemberListRequest(), timeout=timeout)

    # -- maintenance -----------------------------------------------------------------

    async def alarms(self, *, timeout: float | None = None) -> list[rpc_pb2.AlarmMember]:
        """Every alarm raised in the cluster (``NOSPACE``, ``CORRUPT``), on any member."""
        reply = await self.maintenance.Alarm(
            rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET), timeout=timeout
        )
        return list(reply.alarms)

    async def disarm(
        self, alarm: rpc_pb2.AlarmType.ValueType = rpc_pb2.NOSPACE, *, timeout: float | None = None
    ) -> list[rpc_pb2.AlarmMember]:
        """Deactivate ``alarm`` (default ``NOSPACE``) on every member that raised it;
        returns the alarms disarmed. etcd raises NOSPACE again on the next write if the
        database is still over its quota: compact and defragment first."""
        raised = [a for a in await self.alarms(timeout=timeout) if a.alarm == alarm]
        for member in raised:
            await self.maintenance.Alarm(
                rpc_pb2.AlarmRequest(
                    action=rpc_pb2.AlarmRequest.DEACTIVATE, memberID=member.memberID, alarm=alarm
                ),
                timeout=timeout,
            )
        return raised

    async def defragment(self, *, timeout: float | None = None) -> rpc_pb2.DefragmentResponse:
        """Defragment the member this call reaches (give a client one endpoint to pick
        the member): it rewrites its database file without the pages compaction freed,
        blocking that member's reads and writes meanwhile."""
        return await self.maintenance.Defragment(rpc_pb2.DefragmentRequest(), timeout=timeout)
