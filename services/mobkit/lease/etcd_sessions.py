"""One etcd lease per (runtime instance, ttl), as etcd's ``concurrency.Session`` keeps one.

Every lease key an instance holds is attached to its etcd lease, so one keepalive
renews them all and one expiry drops them all. The lease id is published under
``<prefix>/lease-sessions/<ttl seconds>/<runtime instance>`` (attached to the lease
itself, so it disappears with it): every lease-service replica then uses the same
etcd lease for an instance. The in-memory cache is only a hint; a lease that
vanished (expired, revoked, etcd data lost) shows up as ``EtcdLeaseNotFound`` on the
next put and the caller asks for a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TypeVar

from mobkit.core.keyspace import Keyspace
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.errors import EtcdError
from mobkit.etcd.ops import compare_create_revision, put_op, range_op, txn_request
from mobkit.lease.etcd_retry import call_with_retry

log = logging.getLogger(__name__)

T = TypeVar("T")

# A lease confirmed alive this recently (as a fraction of its TTL) is used without
# another keepalive before new keys are attached to it.
FRESH_FRACTION = 1 / 3


@dataclass(eq=False)
class InstanceLease:
    holder: str
    ttl_s: int
    lease_id: int
    granted: timedelta
    refreshed_at: float
    acquiring: int = 0
    """Acquires in flight in this process: the lease is not revoked under them."""


class InstanceLeases:
    """Finds, opens, keeps alive and ends the etcd leases of runtime instances."""

    def __init__(
        self,
        client: EtcdClient,
        keyspace: Keyspace,
        *,
        retry_budget: float,
        clock: Callable[[], float] = time.monotonic,
        on_revision: Callable[[int], None] = lambda _: None,
    ) -> None:
        self._client = client
        self._keys = keyspace
        self._budget = retry_budget
        self._clock = clock
        self._on_revision = on_revision
        self._by_key: dict[tuple[str, int], InstanceLease] = {}
        self._by_id: dict[int, InstanceLease] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}

    def session_key(self, holder: str, ttl_s: int) -> bytes:
        return self._keys.lease_session(ttl_s, holder)

    def is_session_key(self, key: bytes) -> bool:
        return self._keys.is_lease_session(key)

    def known(self, lease_id: int) -> InstanceLease | None:
        return self._by_id.get(lease_id)

    def forget(self, lease: InstanceLease) -> None:
        if self._by_key.get((lease.holder, lease.ttl_s)) is lease:
            del self._by_key[(lease.holder, lease.ttl_s)]
        if self._by_id.get(lease.lease_id) is lease:
            del self._by_id[lease.lease_id]

    async def _retry(self, call: Callable[[], Awaitable[T]]) -> T:
        return await call_with_retry(call, budget=self._budget, clock=self._clock)

    def _fresh(self, lease: InstanceLease) -> bool:
        age = self._clock() - lease.refreshed_at
        return age < lease.granted.total_seconds() * FRESH_FRACTION

    async def get(self, holder: str, ttl_s: int) -> InstanceLease:
        """The instance's live etcd lease for ``ttl_s``, opening one if there is none."""
        key = (holder, ttl_s)
        lease = self._by_key.get(key)
        if lease is not None and self._fresh(lease):
            return lease
        async with self._locks.setdefault(key, asyncio.Lock()):
            lease = self._by_key.get(key)
            if lease is not None:
                if self._fresh(lease) or await self.keepalive(lease.lease_id) > 0:
                    return lease
                self.forget(lease)
            return await self._open(holder, ttl_s)

    async def keepalive(self, lease_id: int) -> int:
        """Renew one etcd lease; its TTL in seconds, ``<= 0`` once it has expired."""
        ttl = await self._retry(lambda: self._client.keepalive_once(lease_id))
        lease = self._by_id.get(lease_id)
        if lease is not None:
            if ttl > 0:
                lease.refreshed_at = self._clock()
            else:
                self.forget(lease)
        return ttl

    async def _open(self, holder: str, ttl_s: int) -> InstanceLease:
        skey = self.session_key(holder, ttl_s)
        current = await self._retry(lambda: self._client.get(skey))
        if current is not None:
            theirs = _lease_id(current.value)
            ttl = 0 if theirs is None else await self.keepalive(theirs)
            if theirs is not None and ttl > 0:
                return self._remember(holder, ttl_s, theirs, ttl)
        # None yet, or a dead one about to be deleted: grant and publish ours, unless
        # another replica publishes first; then use theirs.
        lease_id, granted = await self._retry(lambda: self._client.grant_lease(ttl_s))
        expected = current.create_revision if current is not None else 0
        for _ in range(3):
            request = txn_request(
                [compare_create_revision(skey, "=", expected)],
                [put_op(skey, str(lease_id), lease=lease_id)],
                [range_op(skey)],
            )
            reply = await self._retry(partial(self._client.txn, request))
            self._on_revision(reply.header.revision)
            if reply.succeeded:
                return self._remember(holder, ttl_s, lease_id, granted)
            winner = reply.responses[0].response_range.kvs
            theirs = _lease_id(winner[0].value) if winner else None
            if theirs is not None:
                await self._revoke_quietly(lease_id)
                return self._remember(holder, ttl_s, theirs, granted)
            expected = winner[0].create_revision if winner else 0  # the dead one went away
        await self._revoke_quietly(lease_id)
        raise EtcdError(f"lease session {skey!r} kept changing while opening it")

    def _remember(self, holder: str, ttl_s: int, lease_id: int, granted: int) -> InstanceLease:
        lease = InstanceLease(
            holder, ttl_s, lease_id, timedelta(seconds=granted), refreshed_at=self._clock()
        )
        self._by_key[(holder, ttl_s)] = lease
        self._by_id[lease_id] = lease
        return lease

    async def end_if_idle(self, lease_ids: Iterable[int]) -> None:
        """Revoke each etcd lease that holds no lease key any more (best effort).

        Another replica may attach a key between the check and the revoke; that key
        then vanishes with the lease and its holder sees ``Lost`` at the next renewal,
        which is safe (fencing never depends on it), only wasteful.
        """
        for lease_id in lease_ids:
            try:
                await self._end_if_idle(lease_id)
            except EtcdError as exc:
                log.info("could not end idle etcd lease %x: %s", lease_id, exc)

    async def _end_if_idle(self, lease_id: int) -> None:
        mine = self._by_id.get(lease_id)
        if mine is not None and mine.acquiring:
            return
        info = await self._client.lease_time_to_live(lease_id, keys=True)
        if info.TTL <= 0:
            if mine is not None:
                self.forget(mine)
            return
        if any(not self.is_session_key(k) for k in info.keys):
            return
        mine = self._by_id.get(lease_id)
        if mine is not None:
            if mine.acquiring:
                return
            self.forget(mine)
        await self._client.revoke_lease(lease_id)

    async def _revoke_quietly(self, lease_id: int) -> None:
        try:
            await self._client.revoke_lease(lease_id)
        except EtcdError as exc:  # it expires by itself; it holds no keys
            log.info("could not revoke unused etcd lease %x: %s", lease_id, exc)


def _lease_id(value: bytes) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None
