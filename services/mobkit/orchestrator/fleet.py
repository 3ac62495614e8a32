"""The fleet of orchestrator replicas, as seen in etcd.

* Each replica registers ``<prefix>/replicas/<holder>`` on an etcd lease of its
  own, kept alive in the background: a replica that dies drops out of the list
  after about half a lease TTL (``registration_ttl``), before its identity
  leases expire.
* Who owns an identity (and which identities are held at all, and when one is
  released) is the lease provider's answer (:class:`~mobkit.lease.domain.LeaseOwnership`):
  a holder string, :class:`~mobkit.core.holder.Holder`. Every key here comes from
  :class:`~mobkit.core.keyspace.Keyspace`. While the release watch runs, owners
  (looked up, or read by the claim loop's ``held``) are remembered for forwarding,
  and forgotten when it reports their lease gone (or the caller found them stale).
* Operator intents ``<prefix>/intents/<identity>`` (``suspended`` or ``retired``)
  outlive the replica that carried them out: no replica claims such an identity
  until ResumeIdentity deletes the intent.
* Fair share: with N live replicas and M desired identities, each replica holds
  at most ``ceil(M / N)``; which ones it prefers is decided by rendezvous hashing,
  so replicas mostly want different identities and rarely race for the same key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
from collections.abc import Callable, Iterable

from mobkit.core.errors import MobKitError
from mobkit.core.holder import Holder
from mobkit.core.identity import FencingToken
from mobkit.core.keyspace import Keyspace
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.errors import EtcdCompacted, EtcdError, backend_error
from mobkit.etcd.ops import (
    delete_op,
    prefix_end,
    put_op,
    txn_request,
)
from mobkit.lease.domain import LeaseOwnership
from mobkit.lease.etcd_backend import EtcdLeaseProvider
from mobkit.lease.etcd_fence import fence_compare

log = logging.getLogger("mobkit.fleet")

REMEMBERED_OWNERS = 100_000
"""Owners remembered at most (one short string each); past it, the memory starts over."""


def holder_address(holder: str) -> str | None:
    """``inst~inc@127.0.0.1:7700`` -> ``127.0.0.1:7700``."""
    return Holder(holder).address


def fair_share(desired: int, replicas: int) -> int:
    return math.ceil(desired / max(1, replicas))


def registration_ttl(lease_ttl: float) -> int:
    """The replica registration's TTL: shorter than the identity leases' (etcd grants
    at least 2 s). A dead replica must drop out of the fair share no later than its
    identities become vacant, or survivors, still counting it, could not claim them
    until its registration expired too."""
    return max(2, math.ceil(lease_ttl / 2))


def rendezvous_score(key: str, holder: str) -> bytes:
    """Highest-random-weight hashing: ``key``'s weight for a replica (lower is more
    wanted), scored on the replica process (``inst~inc``), whatever address it
    advertises."""
    instance = Holder(holder).replica
    return hashlib.blake2b(f"{key}|{instance}".encode(), digest_size=8).digest()


def preference(identities: Iterable[str], holder: str) -> list[str]:
    """Identities in this replica's rendezvous order (most wanted first)."""
    return sorted(identities, key=lambda identity: rendezvous_score(identity, holder))


class ReplicaRegistry:
    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        holder: str,
        ttl_s: int,
        *,
        leases: LeaseOwnership | None = None,
    ) -> None:
        self._client = client
        self._keys = Keyspace(prefix)
        # Who owns what is the lease provider's to say; by default the etcd one on the
        # same keys (one read per question, whether the suite runs split or not).
        self._leases = leases if leases is not None else EtcdLeaseProvider(client, prefix)
        self._replicas = self._keys.replicas
        self._intents = self._keys.intents
        self.holder = holder
        self._ttl = max(1, ttl_s)
        self._lease_id = 0
        self._task: asyncio.Task[None] | None = None
        # Owners remembered for forwarding, trusted only while the release watch runs;
        # ``_releases`` counts reported releases, so a lookup that raced one is not kept.
        self._owners: dict[str, str] = {}
        self._watching = 0
        self._releases = 0

    async def start(self) -> None:
        try:
            await self._register()
        except EtcdError as exc:  # e.g. out of space: one clear line, not a traceback
            raise backend_error(exc) from exc
        self._task = asyncio.create_task(self._keepalive(), name="replica-registry")

    async def _register(self) -> None:
        self._lease_id, _ = await self._client.grant_lease(self._ttl)
        await self._client.put(self._keys.replica(self.holder), b"", lease=self._lease_id)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                if await self._client.keepalive_once(self._lease_id) <= 0:
                    await self._register()  # expired while we were away: come back
            except EtcdError as exc:
                log.warning("replica registration keepalive failed: %s", exc)

    async def members(self) -> list[str]:
        try:
            reply = await self._client.range(
                self._replicas, range_end=prefix_end(self._replicas), keys_only=True
            )
        except EtcdError as exc:
            raise backend_error(exc) from exc
        return sorted(kv.key[len(self._replicas) :].decode() for kv in reply.kvs)

    async def owner(self, identity: str, *, recent: bool = False) -> str | None:
        """The holder of ``identity``'s lease. With ``recent``, an owner remembered from
        an earlier lookup will do while the release watch runs: for forwarding, where a
        stale owner answers NOT_ACTIVE and the caller calls :meth:`forget_owner`."""
        if recent and self._watching:
            known = self._owners.get(identity)
            if known is not None:
                return known
        releases = self._releases
        holder = await self._leases.holder_of(identity)
        if holder is None:
            self._owners.pop(identity, None)
        elif self._watching and releases == self._releases:
            if len(self._owners) >= REMEMBERED_OWNERS:
                self._owners.clear()
            self._owners[identity] = holder
        return holder

    def forget_owner(self, identity: str) -> None:
        self._owners.pop(identity, None)

    async def held(self) -> dict[str, str]:
        """Every identity that has a lease key now, with its holder: one read. While the
        release watch runs, it is also what is remembered for forwarding from then on
        (the claim loop reads it every round), unless a release was reported meanwhile."""
        releases = self._releases
        holders = await self._leases.holders()
        if self._watching and releases == self._releases and len(holders) <= REMEMBERED_OWNERS:
            self._owners = dict(holders)
        return holders

    async def intents(self) -> dict[str, str]:
        """Every identity with an operator intent, and the intent: one read."""
        return await self._by_identity(self._intents)

    async def _by_identity(self, prefix: bytes) -> dict[str, str]:
        try:
            reply = await self._client.range(prefix, range_end=prefix_end(prefix))
        except EtcdError as exc:
            raise backend_error(exc) from exc
        return {kv.key[len(prefix) :].decode(): kv.value.decode() for kv in reply.kvs}

    async def set_intent(
        self, identity: str, intent: str | None, fencing_token: FencingToken | None
    ) -> bool:
        """Record (or with None, clear) an operator intent. With a fencing token, only
        while the identity's lease key is still the one that token names, so a stale
        owner cannot suspend or retire what another replica now runs. Returns whether
        it was written."""
        key = self._keys.intent(identity)
        write = put_op(key, intent.encode()) if intent is not None else delete_op(key)
        compare = [fence_compare(self._keys, identity, fencing_token)] if fencing_token else []
        try:
            reply = await self._client.txn(txn_request(compare, [write]))
        except EtcdError as exc:
            raise backend_error(exc) from exc
        return bool(reply.succeeded)

    async def watch_vacancies(self, notify: Callable[[], None]) -> None:
        """Until cancelled, call ``notify`` whenever an identity's lease (as the lease
        provider reports), an intent or a replica's registration goes away (released,
        resumed, or expired with a dead replica): a moment to claim at once instead of
        at the next poll. History lost to compaction only delays that to the poll."""

        def released(identity: str) -> None:
            self._releases += 1
            self._owners.pop(identity, None)
            notify()

        async def follow(prefix: bytes) -> None:
            while True:
                with contextlib.suppress(EtcdCompacted):
                    async for _ in self._client.watch(
                        prefix, prefix_end(prefix), deletes_only=True
                    ):
                        notify()

        self._watching += 1
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._leases.watch_releases(released))
                group.create_task(follow(self._replicas))
                group.create_task(follow(self._intents))
        except* (EtcdError, MobKitError) as failed:
            first = failed.exceptions[0]  # the lease provider's error as it is
            raise (backend_error(first) if isinstance(first, EtcdError) else first) from None
        finally:
            self._watching -= 1
            if not self._watching:
                self._owners.clear()  # releases go unseen from now on

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(EtcdError):
            await self._client.revoke_lease(self._lease_id)
