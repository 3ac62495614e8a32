"""Every store operation, written once as a plan that engines execute atomically.

A plan is a generator (sans-I/O): it yields :class:`Read` requests, receives the stored
values, applies :mod:`mobkit.continuity.rules` and returns a :class:`Commit` (its result
and the writes to make). An engine runs the plan so that its reads and writes form one
atomic step: the memory engine without yielding to the event loop, SQLite inside one
``BEGIN IMMEDIATE`` transaction, etcd as reads followed by one txn comparing every key
read (a conflict re-runs the plan). So the rules cannot diverge between backends: only
how bytes are fetched and stored differs.

:class:`PlanStore` implements the :class:`~mobkit.continuity.domain.ContinuityStore`
port on top: it validates input (before any read) and hands plans to ``_execute``.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from mobkit.continuity import rules
from mobkit.continuity.codec import (
    CorruptValue,
    RecordState,
    SnapshotHeader,
    decode_binding,
    decode_record,
    decode_snapshot,
    decode_snapshot_header,
    encode_binding,
    encode_record,
    encode_snapshot,
    record_key,
    session_key,
    snapshot_key,
    snapshot_prefix,
)
from mobkit.continuity.domain import (
    DEFAULT_SNAPSHOT_LIMIT_BYTES,
    LoadedSnapshot,
    ResolveEntry,
    SessionRecord,
    check_counter,
    check_fencing_token,
    content_revision,
    parse_revision,
    parse_session_id,
)
from mobkit.core.errors import (
    BackendUnavailable,
    InvalidArgument,
    SnapshotTooLarge,
    StoreCorruption,
)
from mobkit.core.identity import (
    AgentIdentity,
    AgentRuntimeId,
    identity_problem,
    parse_identities,
    parse_identity,
)
from mobkit.core.types import (
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


@dataclass(frozen=True, slots=True)
class Commit(Generic[T]):
    result: T
    puts: dict[bytes, bytes] = field(default_factory=dict)
    deletes: tuple[bytes, ...] = ()
    delete_prefixes: tuple[bytes, ...] = ()

    @property
    def writes(self) -> bool:
        return bool(self.puts or self.deletes or self.delete_prefixes)


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


def upsert_plan(record: ContinuityRecord, token: int) -> Plan[None]:
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
    return Commit(None, puts=puts, deletes=deletes)


@dataclass(frozen=True, slots=True)
class SnapshotWrite:
    """A snapshot as it will be stored: encoded once, before the atomic step (hashing and
    copying the data need no lock)."""

    header: SnapshotHeader
    encoded: bytes

    @classmethod
    def of(
        cls, identity: str, session_id: str, generation: int, version: int, token: int, data: bytes
    ) -> SnapshotWrite:
        header = SnapshotHeader(
            identity, session_id, generation, version, token, content_revision(data), len(data)
        )
        return cls(header, encode_snapshot(header, data))


def save_plan(identity: AgentIdentity, write: SnapshotWrite) -> Plan[str]:
    header = write.header
    rk, sk = record_key(identity), snapshot_key(identity, header.session_id)
    # Only the record is read on the happy path: every other write of this identity's
    # snapshots also writes its record (compare-and-delete only removes a snapshot, which
    # a newer save may replace), so the record alone guards the commit.
    got = yield Read((rk,), lease_of=identity, lease_hint=header.fencing_token)
    state = _state(identity, _known(got.values[0]))
    rules.check_fence(identity, header.fencing_token, state, got.lease_revision)
    record = rules.checked_save_target(identity, state, header.session_id, header.generation)
    assert state is not None
    if header.checkpoint_version == record.checkpoint_version:
        stored = yield Read((sk,))
        if rules.is_replay(_known(stored.values[0]), header):
            return Commit(header.revision)  # a retry of a save that already committed
    new_state = rules.saved(state, record, header.checkpoint_version, header.fencing_token)
    return Commit(header.revision, puts={rk: encode_record(new_state), sk: write.encoded})


def delete_plan(identity: AgentIdentity, token: int) -> Plan[None]:
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
        delete_prefixes=(snapshot_prefix(identity),),
    )


def load_plan(session_id: str) -> Plan[LoadedSnapshot | None]:
    got = yield Read((session_key(session_id),))
    binding = _known(got.values[0])
    if binding is None:
        return Commit(None)
    owner = _owner(session_id, binding)
    got = yield Read((snapshot_key(owner, session_id),))
    stored = _known(got.values[0])
    if stored is None:
        return Commit(None)
    try:
        header, data = decode_snapshot(stored, owner, session_id)
    except CorruptValue as exc:
        raise StoreCorruption(str(exc), identity=owner) from exc
    snapshot = SessionSnapshot(bytes(data))
    return Commit(
        LoadedSnapshot(snapshot, header.revision, header.generation, header.checkpoint_version)
    )


def delete_if_revision_plan(session_id: str, expected: str) -> Plan[bool]:
    got = yield Read((session_key(session_id),))
    binding = _known(got.values[0])
    if binding is None:
        return Commit(False)
    sk = snapshot_key(_owner(session_id, binding), session_id)
    got = yield Read((sk,))
    stored = _known(got.values[0])
    if stored is None:
        return Commit(False)
    try:
        header, _ = decode_snapshot_header(stored)
    except CorruptValue:
        return Commit(False)  # no revision to compare with
    if header.revision != expected:
        return Commit(False)
    return Commit(True, deletes=(sk,))


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
            version = decode_snapshot_header(stored)[0].checkpoint_version
        except CorruptValue as exc:
            raise StoreCorruption(str(exc), identity=owner) from exc
    return Commit(SessionRecord(state.record, state.fence, version))


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
        got = yield Read(tuple(wanted.values()), tolerate_unavailable=True)
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

    def __init__(self, *, snapshot_limit_bytes: int = DEFAULT_SNAPSHOT_LIMIT_BYTES) -> None:
        if snapshot_limit_bytes <= 0:
            raise InvalidArgument("snapshot_limit_bytes", "must be positive")
        self.snapshot_limit_bytes = snapshot_limit_bytes

    @property
    @abstractmethod
    def durability_policy(self) -> DurabilityPolicy: ...

    @abstractmethod
    async def _execute(self, make_plan: Callable[[], Plan[T]], *, writes: bool) -> T:
        """Run the plan atomically. ``writes``: the plan may return writes. Backend
        failures raise ``StoreUnavailable`` (or ``StoreCorruption``)."""

    async def close(self) -> None:
        return None

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
        self,
        identity: str,
        session_id: str,
        generation: int,
        version: int,
        fencing_token: int,
        snapshot: SessionSnapshot,
    ) -> str:
        ident = parse_identity(identity)
        sid = parse_session_id(session_id)
        gen = check_counter("generation", generation)
        ver = check_counter("checkpoint_version", version, minimum=1)
        token = check_fencing_token(fencing_token)
        if not isinstance(snapshot, SessionSnapshot) or not isinstance(snapshot.data, bytes):
            raise InvalidArgument("snapshot", "expected a SessionSnapshot with bytes data")
        data = snapshot.data
        if len(data) > self.snapshot_limit_bytes:
            raise SnapshotTooLarge(len(data), self.snapshot_limit_bytes)
        write = SnapshotWrite.of(ident, sid, gen, ver, token, data)
        return await self._execute(lambda: save_plan(ident, write), writes=True)

    async def upsert_continuity_record(self, record: ContinuityRecord, fencing_token: int) -> None:
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

    async def delete_continuity_record(self, identity: str, fencing_token: int) -> None:
        ident = parse_identity(identity)
        token = check_fencing_token(fencing_token)
        await self._execute(lambda: delete_plan(ident, token), writes=True)

    async def delete_session_snapshot_if_current_revision(
        self, session_id: str, expected_current_revision: str
    ) -> bool:
        sid = parse_session_id(session_id)
        expected = parse_revision(expected_current_revision)
        return await self._execute(lambda: delete_if_revision_plan(sid, expected), writes=True)
