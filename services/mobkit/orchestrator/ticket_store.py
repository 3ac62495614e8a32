"""Turn tickets in etcd (key layout: :class:`mobkit.core.keyspace.Keyspace`, "turn
tickets").

A ticket is written in ONE txn: its record and its identity's open marker, both on a
retention lease (:class:`RetentionLeases`, so etcd deletes them past the ticket's
retention), compared against the identity's lease key
(:func:`mobkit.lease.etcd_fence.fence_compare`) like a checkpoint is. A stale owner's
write is refused; a write made while no replica holds the identity lands only before
the next owner acquires it, so that owner's look at the open markers sees it. The same
txn drops the open markers of this identity's tickets already known finished: in
steady state a ticket costs its one write and no other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from typing import Any

from mobkit.core.errors import SnapshotTooLarge, StaleFencingToken, StoreCorruption
from mobkit.core.keyspace import Keyspace
from mobkit.core.types import DispatchInput, DispatchOrigin
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.errors import EtcdError, EtcdLeaseNotFound, backend_error
from mobkit.etcd.ops import (
    compare_mod_revision,
    compare_version,
    delete_op,
    put_op,
    range_op,
    txn_request,
)
from mobkit.etcd.retention_leases import RetentionLeases
from mobkit.gen.etcd.api.etcdserverpb import rpc_pb2
from mobkit.lease.etcd_fence import fence_compare
from mobkit.orchestrator.tickets import TicketRecord

MAX_TICKET_BYTES = 1024 * 1024
"""A ticket's record (mostly its input) fits one etcd request with room to spare."""
MAX_CLOSED_PER_WRITE = 32
"""Open markers of finished tickets a ticket write drops beside its own puts."""
SWEEP_EVERY = 1024
"""Finished tickets noted between sweeps of every identity's expired ones."""
FEW_IDENTITIES = 4
"""Up to this many identities, open tickets are read by each one's own markers."""
FORMAT = 1


class EtcdTicketStore:
    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        retention_seconds: float,
        *,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._client = client
        self._keys = Keyspace(prefix)
        self._leases = RetentionLeases(client, lambda: retention_seconds, clock_ms=clock_ms)
        self._clock_ms = clock_ms
        # identity -> {turn id: expires_ms}: finished tickets whose open markers a later
        # write of that identity drops; kept until then or until their retention ends.
        self._finished: dict[str, dict[str, int]] = {}
        self._noted = 0

    async def _txn(self, build: Callable[[int], rpc_pb2.TxnRequest], expires_ms: int) -> Any:
        for attempt in range(2):
            try:
                lease = await self._leases.until(expires_ms)
                return await self._client.txn(build(lease))
            except EtcdLeaseNotFound:  # a retention bucket's lease expired early
                self._leases.forget()
                if attempt:
                    raise backend_error(EtcdError("retention lease lost twice")) from None
            except EtcdError as exc:
                raise backend_error(exc) from exc
        raise AssertionError("unreachable")

    def _finish(self, identity: str, turn_id: str, expires_ms: int) -> None:
        self._finished.setdefault(identity, {})[turn_id] = expires_ms
        self._noted += 1
        if self._noted % SWEEP_EVERY == 0:  # identities that take no more tickets
            for other in list(self._finished):
                self._forget_expired(other)

    def _forget_expired(self, identity: str) -> None:
        """Drop what is past its retention: its marker expires with its lease."""
        done = self._finished.get(identity)
        if done is None:
            return
        now = self._clock_ms()
        for turn_id in [t for t, expires in done.items() if expires <= now]:
            del done[turn_id]
        if not done:
            del self._finished[identity]

    def _closing(self, identity: str) -> list[str]:
        self._forget_expired(identity)
        done = self._finished.get(identity)
        return sorted(done)[:MAX_CLOSED_PER_WRITE] if done else []

    def _closed(self, identity: str, turn_ids: list[str]) -> None:
        done = self._finished.get(identity)
        if done is not None:
            for turn_id in turn_ids:
                done.pop(turn_id, None)
            if not done:
                del self._finished[identity]

    async def create(self, record: TicketRecord, fencing_token: int) -> tuple[TicketRecord, bool]:
        keys, identity = self._keys, record.identity
        data = encode(record)
        closing = [t for t in self._closing(identity) if t != record.turn_id]

        def build(lease: int) -> rpc_pb2.TxnRequest:
            return txn_request(
                [
                    compare_version(keys.ticket(record.turn_id), "=", 0),
                    fence_compare(keys, identity, fencing_token),
                ],
                [
                    put_op(keys.ticket(record.turn_id), data, lease=lease),
                    put_op(keys.ticket_open(identity, record.turn_id), b"", lease=lease),
                    *(delete_op(keys.ticket_open(identity, t)) for t in closing),
                ],
                [range_op(keys.ticket(record.turn_id)), range_op(keys.lease(identity))],
            )

        reply = await self._txn(build, record.expires_ms)
        if reply.succeeded:
            self._closed(identity, closing)
            return record, True
        existing, lease_key = reply.responses[0].response_range, reply.responses[1].response_range
        if existing.kvs:
            stored = decode(bytes(existing.kvs[0].value), record.turn_id)
            if stored.expires_ms > self._clock_ms():
                return stored, False
            # Past its retention, not yet deleted by etcd: the turn id is free again.
            await self._drop(record.turn_id, int(existing.kvs[0].mod_revision))
            return await self.create(record, fencing_token)
        current = int(lease_key.kvs[0].create_revision) if lease_key.kvs else 0
        raise StaleFencingToken(identity, fencing_token, current)

    async def _drop(self, turn_id: str, mod_revision: int) -> None:
        key = self._keys.ticket(turn_id)
        try:
            await self._client.txn(
                txn_request([compare_mod_revision(key, "=", mod_revision)], [delete_op(key)])
            )
        except EtcdError as exc:
            raise backend_error(exc) from exc

    async def get(self, turn_id: str) -> TicketRecord | None:
        try:
            kv = await self._client.get(self._keys.ticket(turn_id))
        except EtcdError as exc:
            raise backend_error(exc) from exc
        if kv is None:
            return None
        record = decode(bytes(kv.value), turn_id)
        return record if record.expires_ms > self._clock_ms() else None

    async def open_tickets(self, identity: str) -> list[TicketRecord]:
        return (await self.open_tickets_of([identity]))[identity]

    async def open_tickets_of(self, identities: Collection[str]) -> dict[str, list[TicketRecord]]:
        keys = self._keys
        wanted = set(identities)
        # A few identities: their own markers; a burst of activations: one paged range
        # over every identity's markers (few in steady state, since writes close them).
        prefixes = (
            [keys.tickets_open_of(i) for i in sorted(wanted)]
            if len(wanted) <= FEW_IDENTITIES
            else [keys.tickets_open]
        )
        root = len(keys.tickets_open)
        open_: list[tuple[str, str]] = []
        found: dict[str, list[TicketRecord]] = {i: [] for i in wanted}
        try:
            for prefix in prefixes:
                async for kv in self._client.range_prefix(prefix, keys_only=True):
                    identity, _, turn_id = bytes(kv.key[root:]).decode().partition("/")
                    if identity in wanted and turn_id:
                        open_.append((identity, turn_id))
            for start in range(0, len(open_), 64):  # under etcd's --max-txn-ops
                chunk = open_[start : start + 64]
                reply = await self._client.txn(
                    txn_request(success=[range_op(keys.ticket(t)) for _, t in chunk])
                )
                for (identity, turn_id), response in zip(chunk, reply.responses, strict=True):
                    kvs = response.response_range.kvs
                    record = decode(bytes(kvs[0].value), turn_id) if kvs else None
                    if (
                        record is not None
                        and record.expires_ms > self._clock_ms()
                        and record.failure_reason is None
                    ):
                        found[identity].append(record)
                    else:  # failed, past its retention, or its record already gone
                        self._finish(identity, turn_id, record.expires_ms if record else 0)
        except EtcdError as exc:
            raise backend_error(exc) from exc
        return found

    async def fail(self, record: TicketRecord, fencing_token: int) -> None:
        keys, identity = self._keys, record.identity

        def build(lease: int) -> rpc_pb2.TxnRequest:
            # No compare on the record: a keyless ticket's turn may fail before it has one.
            return txn_request(
                [fence_compare(keys, identity, fencing_token)],
                [
                    put_op(keys.ticket(record.turn_id), encode(record), lease=lease),
                    delete_op(keys.ticket_open(identity, record.turn_id)),
                ],
                [range_op(keys.lease(identity))],
            )

        reply = await self._txn(build, record.expires_ms)
        if not reply.succeeded:
            kvs = reply.responses[0].response_range.kvs
            current = int(kvs[0].create_revision) if kvs else 0
            raise StaleFencingToken(identity, fencing_token, current)

    def finished(self, record: TicketRecord) -> None:
        self._finish(record.identity, record.turn_id, record.expires_ms)

    async def close_finished(self, identity: str, fencing_token: int) -> None:
        closing = self._closing(identity)
        if not closing:
            return
        keys = self._keys
        request = txn_request(
            [fence_compare(keys, identity, fencing_token)],
            [delete_op(keys.ticket_open(identity, t)) for t in closing],
        )
        try:
            reply = await self._client.txn(request)
        except EtcdError as exc:
            raise backend_error(exc) from exc
        if reply.succeeded:
            self._closed(identity, closing)


def encode(record: TicketRecord) -> bytes:
    m = record.message
    data = json.dumps(
        {
            "format": FORMAT,
            "turn_id": record.turn_id,
            "identity": record.identity,
            "content": m.content,
            "origin": m.origin.value,
            "correlation_id": m.correlation_id,
            "idempotency_key": m.idempotency_key,
            "dispatch": record.dispatch,
            "submitted_ms": record.submitted_ms,
            "expires_ms": record.expires_ms,
            "failure_reason": record.failure_reason,
            "failure_message": record.failure_message,
            "attempts": record.attempts,
            "updated_ms": record.updated_ms,
        },
        separators=(",", ":"),
    ).encode()
    if len(data) > MAX_TICKET_BYTES:
        raise SnapshotTooLarge(len(data), MAX_TICKET_BYTES)
    return data


def decode(data: bytes, turn_id: str) -> TicketRecord:
    try:
        d = json.loads(data)
        if d.get("format") != FORMAT:
            raise ValueError(f"unknown format {d.get('format')!r}")
        message = DispatchInput(
            d["content"],
            DispatchOrigin(d["origin"]),
            correlation_id=d["correlation_id"],
            idempotency_key=d["idempotency_key"],
        )
        return TicketRecord(
            turn_id=d["turn_id"],
            identity=d["identity"],
            message=message,
            dispatch=bool(d["dispatch"]),
            submitted_ms=int(d["submitted_ms"]),
            expires_ms=int(d["expires_ms"]),
            failure_reason=d["failure_reason"],
            failure_message=d["failure_message"],
            attempts=int(d["attempts"]),
            updated_ms=int(d["updated_ms"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreCorruption(f"turn ticket {turn_id}: {exc}") from exc
