"""Every store operation, written once as a plan that engines execute atomically.

A plan is a generator (sans-I/O): it yields :class:`Read` requests, receives the stored
values, applies :mod:`mobkit.continuity.rules` and returns a :class:`Commit` (its result
and the writes to make). An engine runs the plan so that its reads and writes form one
atomic step: the memory engine without yielding to the event loop, SQLite inside one
``BEGIN IMMEDIATE`` transaction, etcd as reads followed by one txn comparing every key
read (a conflict re-runs the plan). So the rules cannot diverge between backends: only
how bytes are fetched and stored differs.

Chunked snapshots add two kinds of write that an engine with a request size limit (etcd)
may take out of the atomic step, both safe by construction:

* ``staged`` chunks are immutable and named by their content, so they may be written
  *before* the step (each batch still conditional on the plan's reads). Written but never
  referenced (a crash before the step) they are garbage, which a collection removes.
* ``garbage`` (chunks the new manifest no longer names) may be deleted *after* the step.
  Every batch compares the record (``guard``) with what the step wrote and rewrites it,
  so a save that read the record before the deletion cannot commit a manifest naming a
  chunk it deleted: its own commit compares the record and fails.

Receipts are ``expiring`` puts: the engine drops them after their deadline.

:class:`PlanStore` implements the :class:`~mobkit.continuity.domain.ContinuityStore`
port on top: it validates input (before any read) and hands plans to ``_execute``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from mobkit.continuity import chunking, rules
from mobkit.continuity.chunking import ChunkRef
from mobkit.continuity.codec import (
    CorruptValue,
    RecordState,
    SnapshotHeader,
    assemble,
    chunk_key,
    chunk_prefix,
    decode_binding,
    decode_receipt,
    decode_record,
    decode_snapshot,
    encode_binding,
    encode_manifest,
    encode_receipt,
    encode_record,
    encode_snapshot,
    manifest_entries,
    receipt_key,
    receipt_prefix,
    record_key,
    session_chunk_prefix,
    session_key,
    snapshot_header,
    snapshot_key,
    snapshot_prefix,
)
from mobkit.continuity.domain import (
    DEFAULT_RECEIPT_RETENTION_SECONDS,
    DEFAULT_SNAPSHOT_LIMIT_BYTES,
    MAX_RECEIPT_BYTES,
    LoadedSnapshot,
    ResolveEntry,
    SessionRecord,
    StoredReceipt,
    TurnReceipt,
    check_counter,
    check_fencing_token,
    content_revision,
    parse_idempotency_key,
    parse_revision,
    parse_session_id,
)
from mobkit.core.errors import (
    BackendUnavailable,
    InvalidArgument,
    MobKitError,
    SnapshotTooLarge,
    StoreCorruption,
)
from mobkit.core.identity import (
    AgentIdentity,
    AgentRuntimeId,
    FencingToken,
    identity_problem,
    parse_identities,
    parse_identity,
)
from mobkit.core.types import (
    Checkpoint,
    ContinuityHealth,
    ContinuityRecord,
    DurabilityPolicy,
    SessionSnapshot,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

StoredValue = bytes | None | rules.Unreadable


@dataclass(frozen=True, slots=True)
class Read:
    """Fetch ``keys`` (logical keys of :mod:`mobkit.continuity.codec`)."""

    keys: tuple[bytes, ...]
    list_prefix: bytes | None = None
    """Also list the keys under this prefix (keys only; a listing is not compared at
    commit, so only plans whose writes are guarded otherwise may use one)."""
    lease_of: AgentIdentity | None = None
    """Also read this identity's lease fence, on engines that share etcd with the lease
    service; the commit then also requires the lease key to be unchanged."""
    tolerate_unavailable: bool = False
    """Return :class:`~mobkit.continuity.rules.Unreadable` for values the backend could
    not deliver instead of failing the whole operation."""
    # Hints for engines that check every value a write plan read when they commit (etcd):
    # such an engine may take a hinted value instead of reading it, since a wrong guess
    # only fails the commit and re-runs the plan on real reads. Others ignore them.
    lease_hint: int | None = None
    """The token the plan writes under: the lease key's ``create_revision`` if the
    writer is the current owner."""
    assume_absent: bool = False
    """The keys most likely do not exist (a brand-new session's binding)."""
    warm: bool = False
    """A read plan's values that the next write of the same keys will compare."""


@dataclass(frozen=True, slots=True)
class ReadResult:
    values: list[StoredValue]
    lease_revision: int | None = None
    """``create_revision`` of the lease key (0: no lease); None on engines without one."""
    listed: tuple[bytes, ...] = ()
    """The logical keys under ``Read.list_prefix``."""


@dataclass(frozen=True, slots=True)
class Commit(Generic[T]):
    result: T
    puts: dict[bytes, bytes] = field(default_factory=dict)
    deletes: tuple[bytes, ...] = ()
    delete_prefixes: tuple[bytes, ...] = ()
    staged: dict[bytes, bytes] = field(default_factory=dict)
    """Content-addressed chunks: may be written before the atomic step."""
    garbage: tuple[bytes, ...] = ()
    """Chunks no longer referenced: may be deleted after the atomic step, each batch
    guarded by ``guard`` (see the module docstring)."""
    guard: bytes | None = None
    """The record key that garbage deletions compare and rewrite."""
    expiring: dict[bytes, tuple[bytes, int]] = field(default_factory=dict)
    """Puts that expire: key -> (value, deadline in ms since the epoch)."""

    @property
    def put_bytes(self) -> int:
        """Bytes of keys and values this commit puts (what it costs the store)."""
        return sum(len(k) + len(v) for k, v in (*self.puts.items(), *self.staged.items())) + sum(
            len(k) + len(v) for k, (v, _) in self.expiring.items()
        )

    @property
    def writes(self) -> bool:
        return bool(
            self.puts
            or self.deletes
            or self.delete_prefixes
            or self.staged
            or self.garbage
            or self.expiring
        )


Plan = Generator[Read, ReadResult, Commit[T]]


def _known(value: StoredValue) -> bytes | None:
    """Write plans never tolerate unreadable values, so engines never send one."""
    assert not isinstance(value, rules.Unreadable)
    return value


def _state(identity: AgentIdentity, value: bytes | None) -> RecordState | None:
    if value is None:
        return None
    try:
        return decode_record(value, identity)
    except CorruptValue as exc:
        raise StoreCorruption(str(exc), identity=identity) from exc


def _owner(session_id: str, value: bytes) -> AgentIdentity:
    try:
        return decode_binding(value, session_id)
    except CorruptValue as exc:
        raise StoreCorruption(str(exc)) from exc


# -- plans ------------------------------------------------------------------------------


def upsert_plan(record: ContinuityRecord, token: FencingToken) -> Plan[None]:
    identity, sid = record.identity, record.session_id
    rk, bk = record_key(identity), session_key(sid)
    got = yield Read((rk,), lease_of=identity, lease_hint=token)
    stored_record = _known(got.values[0])
    state = _state(identity, stored_record)
    rules.check_fence(identity, token, state, got.lease_revision)
    current = state.record if state is not None else None
    new_session = current is None or current.session_id != sid
    binding = _known((yield Read((bk,), assume_absent=new_session)).values[0])
    if binding is not None:
        owner = _owner(sid, binding)
        if owner != identity:
            raise InvalidArgument("record.session_id", f"session {sid!r} belongs to {owner!r}")
    new_state, evicted = rules.upserted(state, record, token)
    puts: dict[bytes, bytes] = {}
    encoded = encode_record(new_state)
    if encoded != stored_record:
        puts[rk] = encoded
    if binding is None:
        puts[bk] = encode_binding(identity)
    deletes = tuple(k for s in evicted for k in (snapshot_key(identity, s), session_key(s)))
    chunks = tuple(session_chunk_prefix(identity, s) for s in evicted)
    return Commit(None, puts=puts, deletes=deletes, delete_prefixes=chunks)


@dataclass(frozen=True, slots=True)
class SnapshotWrite:
    """A snapshot as it will be stored: encoded (and, if large, chunked) once, before the
    atomic step (hashing and copying the data need no lock)."""

    header: SnapshotHeader
    encoded: bytes
    """The ``snapshots/`` value: header + data, or header + manifest."""
    cut: chunking.Cut | None = None
    """The chunks of a chunked snapshot."""

    @classmethod
    def of(
        cls,
        identity: str,
        session_id: str,
        generation: int,
        version: int,
        token: FencingToken,
        data: bytes,
        cutter: chunking.IncrementalCutter,
    ) -> SnapshotWrite:
        def header(revision: str) -> SnapshotHeader:
            return SnapshotHeader(
                identity, session_id, generation, version, token, revision, len(data)
            )

        if not chunking.is_chunked(len(data)):
            plain = header(content_revision(data))
            return cls(plain, encode_snapshot(plain, data))
        cut = cutter.cut((identity, session_id), data)
        chunked = header(cut.revision)
        return cls(chunked, encode_manifest(chunked, cut.refs), cut)

    @property
    def refs(self) -> tuple[ChunkRef, ...]:
        return self.cut.refs if self.cut is not None else ()


@dataclass(frozen=True, slots=True)
class ReceiptWrite:
    """A turn's receipt as it will be stored, with its deadline."""

    key: bytes
    encoded: bytes
    expires_at_ms: int


def _chunks_of(value: StoredValue) -> frozenset[tuple[bytes, int]]:
    """The chunks a stored snapshot references, as ``(digest, length)`` (none if it is
    absent, whole or corrupt: the save then simply writes every chunk again)."""
    if not isinstance(value, bytes):
        return frozenset()
    try:
        return manifest_entries(value)
    except CorruptValue:
        return frozenset()


def save_plan(
    identity: AgentIdentity, write: SnapshotWrite, receipt: ReceiptWrite | None = None
) -> Plan[str]:
    header = write.header
    sid = header.session_id
    rk, sk = record_key(identity), snapshot_key(identity, sid)
    # Every other write of this identity's snapshots also writes its record
    # (compare-and-delete rewrites it too), so the record guards the commit.
    got = yield Read((rk,), lease_of=identity, lease_hint=header.fencing_token)
    state = _state(identity, _known(got.values[0]))
    rules.check_fence(identity, header.fencing_token, state, got.lease_revision)
    record = rules.checked_save_target(identity, state, sid, header.generation)
    assert state is not None
    # The session's current snapshot: what a retry would find, and the chunks to reuse.
    # A session at checkpoint 0 has never been saved.
    stored = _known((yield Read((sk,), assume_absent=record.checkpoint_version == 0)).values[0])
    if header.checkpoint_version == record.checkpoint_version and rules.is_replay(stored, header):
        return Commit(header.revision)  # a retry of a save that already committed
    new_state = rules.saved(state, record, header.checkpoint_version, header.fencing_token)
    before = _chunks_of(stored)
    refs = write.refs
    after = frozenset(refs)
    cut = write.cut
    staged = {
        chunk_key(identity, sid, ref): bytes(cut.piece(index))
        for index, ref in enumerate(refs)
        if cut is not None and ref not in before
    }
    garbage = tuple(chunk_key(identity, sid, ChunkRef._make(ref)) for ref in before - after)
    expiring = {receipt.key: (receipt.encoded, receipt.expires_at_ms)} if receipt else {}
    return Commit(
        header.revision,
        puts={rk: encode_record(new_state), sk: write.encoded},
        staged=staged,
        garbage=garbage,
        guard=rk,
        expiring=expiring,
    )


def receipt_plan(
    identity: AgentIdentity, idempotency_key: str, now_ms: int
) -> Plan[StoredReceipt | None]:
    got = yield Read((receipt_key(identity, idempotency_key),))
    value = _known(got.values[0])
    if value is None:
        return Commit(None)
    try:
        data, expires = decode_receipt(value, idempotency_key)
    except CorruptValue as exc:
        raise StoreCorruption(str(exc), identity=identity) from exc
    if expires <= now_ms:
        return Commit(None)  # past its retention, whether or not the engine dropped it yet
    return Commit(StoredReceipt(idempotency_key, data, expires))


def collect_plan(identity: AgentIdentity) -> Plan[int]:
    """Delete the identity's chunks that no kept snapshot references: chunks written by a
    save that never committed (a crash between its chunk writes and its commit) or left
    by deletions that did not finish. Returns how many were deleted."""
    rk = record_key(identity)
    got = yield Read((rk,))
    record_value = _known(got.values[0])
    state = _state(identity, record_value)
    sessions = state.sessions if state is not None else ()
    got = yield Read(tuple(snapshot_key(identity, s) for s in sessions))
    referenced = {
        chunk_key(identity, s, ChunkRef._make(ref))
        for s, value in zip(sessions, got.values, strict=True)
        for ref in _chunks_of(value)
    }
    listed = (yield Read((), list_prefix=chunk_prefix(identity))).listed
    garbage = tuple(k for k in listed if k not in referenced)
    if not garbage:
        return Commit(0)
    # No record: no save can race, so the garbage needs no guard.
    return Commit(len(garbage), garbage=garbage, guard=rk if record_value is not None else None)


def delete_plan(identity: AgentIdentity, token: FencingToken) -> Plan[None]:
    rk = record_key(identity)
    got = yield Read((rk,), lease_of=identity)
    state = _state(identity, _known(got.values[0]))
    rules.check_fence(identity, token, state, got.lease_revision)
    tombstone = rules.deleted(identity, state)
    assert state is not None
    return Commit(
        None,
        puts={rk: encode_record(tombstone)},
        deletes=tuple(session_key(s) for s in state.sessions),
        delete_prefixes=(
            snapshot_prefix(identity),
            chunk_prefix(identity),
            receipt_prefix(identity),
        ),
    )


def load_plan(session_id: str) -> Plan[LoadedSnapshot | None]:
    got = yield Read((session_key(session_id),))
    binding = _known(got.values[0])
    if binding is None:
        return Commit(None)
    owner = _owner(session_id, binding)
    got = yield Read((snapshot_key(owner, session_id),))
    value = _known(got.values[0])
    if value is None:
        return Commit(None)
    try:
        stored = decode_snapshot(value, owner, session_id)
        parts: list[bytes | None] = []
        if stored.chunks:
            keys = [chunk_key(owner, session_id, ref) for ref in stored.chunks]
            unique = tuple(dict.fromkeys(keys))
            got = yield Read(unique)
            found = dict(zip(unique, map(_known, got.values), strict=True))
            parts = [found[k] for k in keys]
        data = assemble(stored, parts)
    except CorruptValue as exc:
        raise StoreCorruption(str(exc), identity=owner) from exc
    header = stored.header
    return Commit(
        LoadedSnapshot(
            SessionSnapshot(data), header.revision, header.generation, header.checkpoint_version
        )
    )


def delete_if_revision_plan(session_id: str, expected: str) -> Plan[bool]:
    got = yield Read((session_key(session_id),))
    binding = _known(got.values[0])
    if binding is None:
        return Commit(False)
    owner = _owner(session_id, binding)
    rk, sk = record_key(owner), snapshot_key(owner, session_id)
    got = yield Read((rk, sk))
    record_value, stored = _known(got.values[0]), _known(got.values[1])
    if stored is None:
        return Commit(False)
    try:
        header = snapshot_header(stored)
    except CorruptValue:
        return Commit(False)  # no revision to compare with
    if header.revision != expected:
        return Commit(False)
    # Rewriting the record makes a save of this session that read it before this delete
    # fail its commit, instead of committing a manifest whose chunks are gone.
    puts = {rk: record_value} if record_value is not None else {}
    return Commit(
        True,
        puts=puts,
        deletes=(sk,),
        delete_prefixes=(session_chunk_prefix(owner, session_id),),
    )


def record_by_session_plan(session_id: str) -> Plan[SessionRecord | None]:
    got = yield Read((session_key(session_id),))
    binding = _known(got.values[0])
    if binding is None:
        return Commit(None)
    owner = _owner(session_id, binding)
    got = yield Read((record_key(owner), snapshot_key(owner, session_id)))
    state = _state(owner, _known(got.values[0]))
    if state is None or state.record is None or state.record.session_id != session_id:
        return Commit(None)
    stored = _known(got.values[1])
    version = 0
    if stored is not None:
        try:
            version = snapshot_header(stored).checkpoint_version
        except CorruptValue as exc:
            raise StoreCorruption(str(exc), identity=owner) from exc
    return Commit(SessionRecord(state.record, FencingToken(state.fence), version))


def resolve_plan(identities: Sequence[AgentIdentity]) -> Plan[list[ResolveEntry]]:
    # Resolving comes right before fencing each identity (activation): warm the reads.
    got = yield Read(tuple(record_key(i) for i in identities), warm=True)
    states: list[RecordState | CorruptValue | None] = []
    wanted: dict[int, bytes] = {}
    for index, (identity, value) in enumerate(zip(identities, got.values, strict=True)):
        try:
            state = decode_record(value, identity) if isinstance(value, bytes) else None
        except CorruptValue as exc:
            states.append(exc)
            continue
        states.append(state)
        if state is not None and state.record is not None and state.record.checkpoint_version:
            wanted[index] = snapshot_key(identity, state.record.session_id)
    snapshots: dict[int, StoredValue] = {}
    if wanted:
        # Warm: the first save after activation reads the snapshot (its chunks are reused).
        got = yield Read(tuple(wanted.values()), tolerate_unavailable=True, warm=True)
        snapshots = dict(zip(wanted, got.values, strict=True))
    return Commit(
        [
            (identity, rules.classify(identity, state, snapshots.get(index)))
            for index, (identity, state) in enumerate(zip(identities, states, strict=True))
        ]
    )


HEALTH_PROBE_KEY = b"records/"
"""A key that never exists (no identity is empty): reading it proves reachability."""


def health_plan(identity: AgentIdentity | None) -> Plan[int | None]:
    got = yield Read((record_key(identity) if identity is not None else HEALTH_PROBE_KEY,))
    value = _known(got.values[0])
    if identity is None or value is None:
        return Commit(None)
    try:
        state = decode_record(value, identity)
    except CorruptValue:
        return Commit(None)
    return Commit(state.record.checkpoint_version if state.record is not None else None)


def drive(plan: Plan[T], read: Callable[[Read], ReadResult]) -> Commit[T]:
    """Run a plan against a synchronous reader (memory, SQLite); the caller applies the
    returned commit within the same atomic step."""
    try:
        request = next(plan)
        while True:
            request = plan.send(read(request))
    except StopIteration as stop:
        commit: Commit[T] = stop.value
        return commit


def _runtime_id(value: str) -> AgentRuntimeId:
    problem = identity_problem(value) if isinstance(value, str) else "must be a string"
    if problem is not None:
        raise InvalidArgument("record.agent_runtime_id", problem)
    return AgentRuntimeId(value)


# -- the port on top of an engine ---------------------------------------------------------


class PlanStore(ABC):
    """:class:`~mobkit.continuity.domain.ContinuityStore` over an engine's ``_execute``."""

    health_timeout = 2.0
    """Seconds a health probe may take before the store counts as unreachable (a backend
    that hangs must not hang the health check)."""

    max_pending_collections = 1024
    """Identities waiting for a background chunk collection (more are dropped: the next
    activation of each schedules it again)."""

    def __init__(
        self,
        *,
        snapshot_limit_bytes: int = DEFAULT_SNAPSHOT_LIMIT_BYTES,
        receipt_retention: float = DEFAULT_RECEIPT_RETENTION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if snapshot_limit_bytes <= 0:
            raise InvalidArgument("snapshot_limit_bytes", "must be positive")
        if not 0 < receipt_retention <= 366 * 24 * 3600:
            raise InvalidArgument("idempotency_retention", "must be between 0 and 366 days")
        self.snapshot_limit_bytes = snapshot_limit_bytes
        self.receipt_retention = receipt_retention
        self.clock = clock
        self.bytes_written = 0
        """Bytes of keys and values put so far (how much a save costs the store)."""
        self._cutter = chunking.IncrementalCutter()
        self._collecting: set[AgentIdentity] = set()
        self._collector: asyncio.Task[None] | None = None

    @property
    @abstractmethod
    def durability_policy(self) -> DurabilityPolicy: ...

    @abstractmethod
    async def _execute(self, make_plan: Callable[[], Plan[T]], *, writes: bool) -> T:
        """Run the plan atomically. ``writes``: the plan may return writes. Backend
        failures raise ``StoreUnavailable`` (or ``StoreCorruption``)."""

    async def close(self) -> None:
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- reads ----------------------------------------------------------------------

    async def resolve_many(self, identities: Sequence[str]) -> list[ResolveEntry]:
        if isinstance(identities, str):
            raise InvalidArgument("identities", "expected a sequence of identities, not a string")
        ids = parse_identities(identities)
        if not ids:
            return []
        return await self._execute(lambda: resolve_plan(ids), writes=False)

    async def load_session_snapshot(self, session_id: str) -> LoadedSnapshot | None:
        sid = parse_session_id(session_id)
        return await self._execute(lambda: load_plan(sid), writes=False)

    async def load_receipt(self, identity: str, idempotency_key: str) -> StoredReceipt | None:
        ident = parse_identity(identity)
        key = parse_idempotency_key(idempotency_key)
        now = self._now_ms()
        return await self._execute(lambda: receipt_plan(ident, key, now), writes=False)

    async def resolve_record_by_session(self, session_id: str) -> SessionRecord | None:
        sid = parse_session_id(session_id)
        return await self._execute(lambda: record_by_session_plan(sid), writes=False)

    async def health(self, identity: str | None = None) -> ContinuityHealth:
        ident = parse_identity(identity) if identity is not None else None
        try:
            async with asyncio.timeout(self.health_timeout):
                version = await self._execute(lambda: health_plan(ident), writes=False)
        except (BackendUnavailable, StoreCorruption, TimeoutError) as exc:
            log.warning("continuity store health check failed: %s", exc)
            return ContinuityHealth(False, self.durability_policy, None)
        return ContinuityHealth(True, self.durability_policy, version)

    # -- writes ---------------------------------------------------------------------

    async def save_session_snapshot(
        self, checkpoint: Checkpoint, receipt: TurnReceipt | None = None
    ) -> str:
        if not isinstance(checkpoint, Checkpoint):
            raise InvalidArgument("checkpoint", "expected a Checkpoint")
        ident = parse_identity(checkpoint.identity)
        sid = parse_session_id(checkpoint.session_id)
        gen = check_counter("generation", checkpoint.generation)
        ver = check_counter("checkpoint_version", checkpoint.checkpoint_version, minimum=1)
        token = check_fencing_token(checkpoint.fencing_token)
        snapshot = checkpoint.snapshot
        if not isinstance(snapshot, SessionSnapshot) or not isinstance(snapshot.data, bytes):
            raise InvalidArgument("snapshot", "expected a SessionSnapshot with bytes data")
        stored_receipt = self._receipt_write(ident, receipt) if receipt is not None else None
        data = snapshot.data
        if len(data) > self.snapshot_limit_bytes:
            raise SnapshotTooLarge(len(data), self.snapshot_limit_bytes)
        write = SnapshotWrite.of(ident, sid, gen, ver, token, data, self._cutter)
        return await self._execute(lambda: save_plan(ident, write, stored_receipt), writes=True)

    def _receipt_write(self, identity: AgentIdentity, receipt: TurnReceipt) -> ReceiptWrite:
        if not isinstance(receipt, TurnReceipt) or not isinstance(receipt.data, bytes):
            raise InvalidArgument("receipt", "expected a TurnReceipt with bytes data")
        key = parse_idempotency_key(receipt.idempotency_key, "receipt.idempotency_key")
        if len(receipt.data) > MAX_RECEIPT_BYTES:
            raise InvalidArgument("receipt.data", f"must be at most {MAX_RECEIPT_BYTES} bytes")
        expires = self._now_ms() + int(self.receipt_retention * 1000)
        return ReceiptWrite(
            receipt_key(identity, key), encode_receipt(key, receipt.data, expires), expires
        )

    async def upsert_continuity_record(
        self, record: ContinuityRecord, fencing_token: FencingToken
    ) -> None:
        if not isinstance(record, ContinuityRecord):
            raise InvalidArgument("record", "expected a ContinuityRecord")
        checked = ContinuityRecord(
            identity=parse_identity(record.identity),
            agent_runtime_id=_runtime_id(record.agent_runtime_id),
            session_id=parse_session_id(record.session_id, "record.session_id"),
            generation=check_counter("record.generation", record.generation),
            checkpoint_version=check_counter(
                "record.checkpoint_version", record.checkpoint_version
            ),
        )
        token = check_fencing_token(fencing_token)
        await self._execute(lambda: upsert_plan(checked, token), writes=True)
        if checked.checkpoint_version:
            # A new owner fencing a checkpointed identity: its predecessor may have died
            # between writing chunks and committing them.
            self.schedule_collection(checked.identity)

    async def delete_continuity_record(self, identity: str, fencing_token: FencingToken) -> None:
        ident = parse_identity(identity)
        token = check_fencing_token(fencing_token)
        await self._execute(lambda: delete_plan(ident, token), writes=True)

    async def delete_session_snapshot_if_current_revision(
        self, session_id: str, expected_current_revision: str
    ) -> bool:
        sid = parse_session_id(session_id)
        expected = parse_revision(expected_current_revision)
        return await self._execute(lambda: delete_if_revision_plan(sid, expected), writes=True)

    # -- chunk collection -------------------------------------------------------------

    async def collect_garbage(self, identity: str) -> int:
        """Delete the identity's chunks that no kept snapshot references; returns how
        many. Safe at any time, concurrently with saves (see :func:`collect_plan`)."""
        ident = parse_identity(identity)
        return await self._execute(lambda: collect_plan(ident), writes=True)

    def schedule_collection(self, identity: AgentIdentity) -> None:
        """Collect the identity's garbage soon, in the background (engines call this when
        a write may have left unreferenced chunks behind)."""
        if len(self._collecting) >= self.max_pending_collections:
            return
        self._collecting.add(identity)
        if self._collector is None or self._collector.done():
            self._collector = asyncio.create_task(self._collect_pending(), name="chunk-gc")

    async def _collect_pending(self) -> None:
        while self._collecting:
            identity = self._collecting.pop()
            try:
                dropped = await self.collect_garbage(identity)
            except MobKitError as exc:
                log.warning("%s: chunk collection failed: %s", identity, exc)
                continue
            if dropped:
                log.info("%s: collected %d unreferenced snapshot chunks", identity, dropped)

    async def idle(self) -> None:
        """Wait until no background collection is pending (tests, shutdown)."""
        while self._collector is not None and not self._collector.done():
            await asyncio.shield(self._collector)
