"""The lease provider on etcd (ARCHITECTURE.md, "Lease on etcd").

Layout (:class:`~mobkit.core.keyspace.Keyspace`): ``<prefix>/leases/<identity>`` = holder (the runtime instance string),
attached to the instance's etcd lease (:mod:`mobkit.lease.etcd_sessions`). The
fencing token is the key's ``create_revision``: etcd revisions only grow, so every
new holder's token is larger than any earlier one.

Costs, in etcd round trips:

* acquire: one per chunk of up to 64 identities (nested create-if-absent txns),
  chunks in flight together;
* renew: one read of the keys (point reads in one txn for a small batch, else a
  keys-only range over the batch's key interval) plus one keepalive per distinct
  etcd lease, normally one: O(1) for N grants;
* release: one per chunk of conditional deletes, then one check (and revoke) of an
  etcd lease that may have been left empty.

Every state lives in etcd; what this object caches is a hint that is re-checked,
so any number of replicas may serve the same keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import timedelta
from functools import partial
from typing import TypeVar

from mobkit.core.errors import BackendFull, LeaseProviderUnavailable
from mobkit.core.identity import AgentIdentity, FencingToken, parse_identities
from mobkit.core.keyspace import Keyspace
from mobkit.core.types import (
    Acquired,
    AlreadyHeld,
    LeaseAcquireResult,
    LeaseGrant,
    LeaseRenewResult,
    Lost,
    Renewed,
)
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.errors import (
    EtcdCompacted,
    EtcdError,
    EtcdLeaseNotFound,
    EtcdNoSpace,
    EtcdUnavailable,
)
from mobkit.etcd.ops import (
    compare_create_revision,
    compare_lease,
    compare_value,
    delete_op,
    prefix_end,
    range_op,
    to_bytes,
    txn_op,
    txn_request,
)
from mobkit.gen.etcd.api.etcdserverpb import rpc_pb2
from mobkit.gen.etcd.api.mvccpb import kv_pb2
from mobkit.lease.domain import (
    Lease,
    check_asker,
    check_grants,
    check_page_size,
    check_runtime_instance,
    check_ttl,
    decode_page_token,
    encode_page_token,
)
from mobkit.lease.etcd_fence import fence_compare
from mobkit.lease.etcd_requests import acquire_request
from mobkit.lease.etcd_retry import call_with_retry
from mobkit.lease.etcd_sessions import InstanceLease, InstanceLeases

log = logging.getLogger(__name__)

T = TypeVar("T")

CHUNK = 64
"""Identities per etcd Txn: well under etcd's default ``--max-txn-ops`` of 128."""

SPARSE = 8
"""Renewal reads a key interval while it holds at most this many keys per grant."""

UNDO_TIMEOUT = 1.0
"""Seconds each best-effort delete of a failed acquire may take (etcd is likely down)."""


@contextlib.contextmanager
def _etcd_unavailable() -> Iterator[None]:
    """etcd errors as the lease port's: out of space is BACKEND_FULL, the rest
    BACKEND_UNAVAILABLE."""
    try:
        yield
    except EtcdNoSpace as exc:
        raise BackendFull(str(exc), backend="etcd") from exc
    except EtcdError as exc:
        raise LeaseProviderUnavailable(str(exc), backend="etcd") from exc


def etcd_ttl_seconds(ttl: timedelta) -> int:
    """etcd leases have whole-second TTLs: round up so a grant never lasts less."""
    return max(1, math.ceil(ttl.total_seconds()))


class EtcdLeaseProvider:
    """:class:`~mobkit.lease.domain.LeaseProvider` on an etcd cluster."""

    def __init__(
        self,
        client: EtcdClient,
        prefix: str = "/mobkit",
        *,
        chunk_size: int = CHUNK,
        max_in_flight: int = 32,
        retry_budget: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._keys = Keyspace(prefix)
        self._chunk = chunk_size
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._budget = retry_budget
        self._clock = clock
        # Highest etcd revision seen in any reply: keys this process creates from now on
        # have larger create revisions (used to undo a failed acquire).
        self._seen_revision = 0
        self._sessions = InstanceLeases(
            client,
            self._keys,
            retry_budget=retry_budget,
            clock=clock,
            on_revision=self._saw,
        )

    # -- helpers ---------------------------------------------------------------------

    def _saw(self, revision: int) -> None:
        self._seen_revision = max(self._seen_revision, revision)

    def key(self, identity: str) -> bytes:
        return self._keys.lease(identity)

    async def _retry(self, call: Callable[[], Awaitable[T]]) -> T:
        return await call_with_retry(call, budget=self._budget, clock=self._clock)

    async def _txn(self, request: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        async with self._in_flight:
            reply = await self._retry(partial(self._client.txn, request))
        self._saw(reply.header.revision)
        return reply

    def _chunks(self, items: Sequence[T]) -> list[Sequence[T]]:
        return [items[i : i + self._chunk] for i in range(0, len(items), self._chunk)]

    # -- acquire ---------------------------------------------------------------------

    async def acquire_leases(
        self, identities: Sequence[str], runtime_instance: str, ttl: timedelta
    ) -> list[LeaseAcquireResult]:
        ids = parse_identities(identities)
        holder = check_runtime_instance(runtime_instance)
        ttl_s = etcd_ttl_seconds(check_ttl(ttl))
        if not ids:
            return []
        with _etcd_unavailable():
            for _ in range(3):
                session = await self._sessions.get(holder, ttl_s)
                try:
                    return await self._acquire(ids, session)
                except EtcdLeaseNotFound:  # expired or revoked meanwhile: open a fresh one
                    self._sessions.forget(session)
            raise EtcdUnavailable("the instance's etcd lease kept vanishing during acquire")

    async def _acquire(
        self, ids: list[AgentIdentity], session: InstanceLease
    ) -> list[LeaseAcquireResult]:
        floor = self._seen_revision
        chunks = self._chunks(ids)
        session.acquiring += 1
        try:
            outcomes: list[list[tuple[LeaseAcquireResult, bool]] | BaseException]
            if len(chunks) == 1:  # the common single-chunk call: no task per chunk
                try:
                    outcomes = [await self._acquire_chunk(chunks[0], session)]
                except Exception as exc:
                    outcomes = [exc]
            else:
                outcomes = await asyncio.gather(
                    *(self._acquire_chunk(chunk, session) for chunk in chunks),
                    return_exceptions=True,
                )
        finally:
            session.acquiring -= 1
        results: list[LeaseAcquireResult] = []
        created: list[LeaseGrant] = []
        unknown: list[AgentIdentity] = []
        errors: list[BaseException] = []
        for chunk, outcome in zip(chunks, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                errors.append(outcome)
                unknown.extend(chunk)
                continue
            for result, new in outcome:
                results.append(result)
                if new and isinstance(result, Acquired):
                    created.append(result.grant)
        if errors:
            await self._undo_acquire(created, unknown, session, floor)
            raise next((e for e in errors if isinstance(e, EtcdUnavailable)), errors[0])
        return results

    async def _acquire_chunk(
        self, chunk: Sequence[AgentIdentity], session: InstanceLease
    ) -> list[tuple[LeaseAcquireResult, bool]]:
        """One Txn for the chunk; each result, and whether this txn created the key."""
        holder = session.holder
        request = acquire_request(list(map(self.key, chunk)), to_bytes(holder), session.lease_id)
        reply = await self._txn(request)
        token = FencingToken(
            reply.header.revision
        )  # every key created by the txn has it as create_revision
        out: list[tuple[LeaseAcquireResult, bool]] = []
        for identity, op in zip(chunk, reply.responses, strict=True):
            sub = op.response_txn
            if sub.succeeded:
                out.append((Acquired(LeaseGrant(identity, token, session.granted)), True))
                continue
            kv = sub.responses[0].response_range.kvs[0]
            current = kv.value.decode(errors="replace")
            if current == holder:  # already ours: the same grant again (idempotent retry)
                grant = LeaseGrant(
                    identity, FencingToken(kv.create_revision), self._granted(kv, session)
                )
                out.append((Acquired(grant), False))
            else:
                out.append((AlreadyHeld(identity, current), False))
        return out

    def _granted(self, kv: kv_pb2.KeyValue, session: InstanceLease) -> timedelta:
        other = self._sessions.known(kv.lease)
        return other.granted if other is not None else session.granted

    async def _undo_acquire(
        self,
        created: list[LeaseGrant],
        unknown: list[AgentIdentity],
        session: InstanceLease,
        floor: int,
    ) -> None:
        """Best effort: delete what a failed acquire created before it raises.

        Keys of chunks that failed may or may not exist (a reply can be lost after
        etcd applied the txn): those are deleted only if they carry this holder, this
        etcd lease and a revision newer than any seen before the call. Whatever stays
        (etcd unreachable) is the instance's own and expires with its lease, or comes
        back as ``Acquired`` when the caller retries.
        """
        ops = [
            txn_op(
                [fence_compare(self._keys, g.identity, g.fencing_token)],
                [delete_op(self.key(g.identity))],
            )
            for g in created
        ]
        if floor > 0:
            ops += [
                txn_op(
                    [
                        compare_value(key, "=", session.holder),
                        compare_lease(key, "=", session.lease_id),
                        compare_create_revision(key, ">", floor),
                    ],
                    [delete_op(key)],
                )
                for key in map(self.key, unknown)
            ]
        if not ops:
            return
        outcomes = await asyncio.gather(
            *(
                self._client.txn(txn_request(success=chunk), timeout=UNDO_TIMEOUT)
                for chunk in self._chunks(ops)
            ),
            return_exceptions=True,
        )
        failed = sum(isinstance(o, BaseException) for o in outcomes)
        if failed:
            log.warning(
                "undoing a failed acquire for %s: %d of %d deletes failed",
                session.holder,
                failed,
                len(outcomes),
            )

    # -- renew -----------------------------------------------------------------------

    async def renew_leases(
        self, grants: Sequence[LeaseGrant], runtime_instance: str | None = None
    ) -> list[LeaseRenewResult]:
        grants = check_grants(grants)
        asker = check_asker(runtime_instance)
        if not grants:
            return []
        keys = [self.key(g.identity) for g in grants]
        with _etcd_unavailable():
            # The holder is the key's value: read only when someone asks to be checked.
            current = await self._read_keys(keys, keys_only=asker is None)
            held = [
                kv if kv is None or asker is None or kv.value == asker.encode() else None
                for kv in (current.get(key) for key in keys)
            ]
            lease_ids = sorted(
                {
                    kv.lease
                    for g, kv in zip(grants, held, strict=True)
                    if kv is not None and kv.create_revision == g.fencing_token and kv.lease
                }
            )
            # Keepalive after the read: a lease alive now kept every key it had then.
            ttls = dict(
                zip(
                    lease_ids,
                    await asyncio.gather(*map(self._sessions.keepalive, lease_ids)),
                    strict=True,
                )
            )
        results: list[LeaseRenewResult] = []
        for grant, kv in zip(grants, held, strict=True):
            if kv is None or kv.create_revision != grant.fencing_token:
                results.append(Lost(grant.identity))
            elif not kv.lease:  # not ours to expire; still the same holder
                results.append(Renewed(grant))
            elif ttls[kv.lease] > 0:
                ttl = timedelta(seconds=ttls[kv.lease])
                results.append(Renewed(LeaseGrant(grant.identity, grant.fencing_token, ttl)))
            else:
                results.append(Lost(grant.identity))
        return results

    async def _read_keys(
        self, keys: list[bytes], *, keys_only: bool = True
    ) -> dict[bytes, kv_pb2.KeyValue]:
        """The current metadata (values too unless ``keys_only``) of those of ``keys``
        that exist.

        A small batch is point reads in one txn. A large one reads the keys' interval
        in one keys-only range (one more if it holds more keys than expected), unless
        the interval turns out to be much larger than the batch: then the rest is
        point reads, many per txn.
        """
        wanted = set(keys)
        if len(keys) <= self._chunk:
            return self._pick(await self._point_reads(keys, keys_only), wanted)
        ordered = sorted(keys)
        start, end = ordered[0], ordered[-1] + b"\0"
        first = await self._retry(
            lambda: self._client.range(start, end, keys_only=keys_only, limit=2 * len(keys))
        )
        self._saw(first.header.revision)
        found = self._pick(first.kvs, wanted)
        if not first.more:
            return found
        after = first.kvs[-1].key + b"\0"
        if first.count <= SPARSE * len(keys):
            rest = await self._retry(lambda: self._client.range(after, end, keys_only=keys_only))
            found.update(self._pick(rest.kvs, wanted))
            return found
        remaining = [k for k in ordered if k >= after]
        reads = (self._point_reads(chunk, keys_only) for chunk in self._chunks(remaining))
        for kvs in await asyncio.gather(*reads):
            found.update(self._pick(kvs, wanted))
        return found

    async def _point_reads(self, keys: Sequence[bytes], keys_only: bool) -> list[kv_pb2.KeyValue]:
        try:
            reply = await self._txn(
                txn_request(success=[range_op(k, keys_only=keys_only) for k in keys])
            )
        except EtcdNoSpace:
            # etcd 3.5 refuses even read-only txns while its NOSPACE alarm is raised;
            # plain ranges (and keepalives) still work, so renewal keeps every owner
            # in place until space is freed.
            replies = await asyncio.gather(
                *(self._retry(partial(self._client.range, k, keys_only=keys_only)) for k in keys)
            )
            return [kv for r in replies for kv in r.kvs]
        return [kv for op in reply.responses for kv in op.response_range.kvs]

    @staticmethod
    def _pick(kvs: Sequence[kv_pb2.KeyValue], wanted: set[bytes]) -> dict[bytes, kv_pb2.KeyValue]:
        return {kv.key: kv for kv in kvs if kv.key in wanted}

    # -- release ---------------------------------------------------------------------

    async def release_leases(
        self, grants: Sequence[LeaseGrant], runtime_instance: str | None = None
    ) -> None:
        grants = check_grants(grants)
        asker = check_asker(runtime_instance)
        if not grants:
            return
        ops = [
            txn_op(
                [fence_compare(self._keys, g.identity, g.fencing_token)]
                + ([compare_value(self.key(g.identity), "=", asker)] if asker else []),
                [delete_op(self.key(g.identity), prev_kv=True)],
            )
            for g in grants
        ]
        with _etcd_unavailable():
            replies = await asyncio.gather(
                *(self._txn(txn_request(success=chunk)) for chunk in self._chunks(ops))
            )
        emptied = {
            prev.lease
            for reply in replies
            for op in reply.responses
            if op.response_txn.succeeded
            for prev in op.response_txn.responses[0].response_delete_range.prev_kvs
            if prev.lease
        }
        await self._sessions.end_if_idle(sorted(emptied))

    # -- ownership (LeaseOwnership) -------------------------------------------------
    # One read each and no retry: callers (routing, the claim loop) poll and retry
    # themselves, and must see an outage at once.

    async def holder_of(self, identity: str) -> str | None:
        with _etcd_unavailable():
            kv = await self._client.get(self.key(identity))
        return kv.value.decode() if kv is not None else None

    async def holders(self) -> dict[str, str]:
        leases = self._keys.leases
        with _etcd_unavailable():
            reply = await self._client.range(leases, range_end=prefix_end(leases))
        return {self._keys.lease_identity(kv.key): kv.value.decode() for kv in reply.kvs}

    async def watch_releases(self, notify: Callable[[str], None]) -> None:
        """Deletions of lease keys (a release, or the expiry of the holder's etcd
        lease), as etcd reports them; history lost to compaction is skipped."""
        leases = self._keys.leases
        with _etcd_unavailable():
            while True:
                with contextlib.suppress(EtcdCompacted):
                    async for event in self._client.watch(
                        leases, prefix_end(leases), deletes_only=True
                    ):
                        notify(self._keys.lease_identity(event.kv.key))

    # -- list ------------------------------------------------------------------------

    async def list_leases(
        self, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Lease], str]:
        size = check_page_size(page_size)
        after = decode_page_token(page_token)
        leases = self._keys.leases
        start = self.key(after) + b"\0" if after is not None else leases
        end = prefix_end(leases)
        with _etcd_unavailable():
            reply = await self._retry(lambda: self._client.range(start, end, limit=size))
            lease_ids = sorted({kv.lease for kv in reply.kvs if kv.lease})
            infos = await asyncio.gather(
                *(self._retry(partial(self._client.lease_time_to_live, i)) for i in lease_ids)
            )
        remaining = {i: max(int(info.TTL), 0) for i, info in zip(lease_ids, infos, strict=True)}
        found = [
            Lease(
                AgentIdentity(self._keys.lease_identity(kv.key)),
                kv.value.decode(errors="replace"),
                FencingToken(kv.create_revision),
                timedelta(seconds=remaining.get(kv.lease, 0)),
            )
            for kv in reply.kvs
        ]
        next_token = encode_page_token(found[-1].identity) if reply.more and found else ""
        return found, next_token
