"""The store's rules as pure functions over decoded state, shared by every engine.

Check order for writes: fencing token first (a stale writer learns it is stale, whatever
else is wrong), then existence, generation, session, and checkpoint version.
"""

from __future__ import annotations

from mobkit.continuity.codec import (
    CorruptValue,
    RecordState,
    SnapshotHeader,
    decode_snapshot,
    snapshot_header,
)
from mobkit.continuity.domain import MAX_SESSIONS_PER_IDENTITY
from mobkit.core.errors import (
    ContinuityRecordNotFound,
    GenerationMismatch,
    InvalidArgument,
    StaleCheckpointVersion,
    StaleFencingToken,
)
from mobkit.core.identity import AgentIdentity, FencingToken, SessionId
from mobkit.core.types import (
    Broken,
    ContinuityFailure,
    ContinuityFailureKind,
    ContinuityRecord,
    ContinuityResolveState,
    Ready,
    Uninitialized,
)


class Unreadable:
    """Marks a value the engine could not read (backend unavailable for that part)."""

    def __init__(self, detail: str) -> None:
        self.detail = detail

    def __repr__(self) -> str:
        return f"Unreadable({self.detail!r})"


def check_fence(
    identity: str, token: FencingToken, state: RecordState | None, lease_revision: int | None
) -> None:
    """``presented < highest seen`` is stale; so is a lease key (when the engine shares
    etcd with the lease service) whose ``create_revision`` is not the token (0: no lease)."""
    highest = state.fence if state is not None else 0
    if token < highest:
        raise StaleFencingToken(identity, token, highest)
    if lease_revision is not None and lease_revision != token:
        raise StaleFencingToken(identity, token, lease_revision)


def live_record(identity: str, state: RecordState | None) -> ContinuityRecord:
    if state is None or state.record is None:
        raise ContinuityRecordNotFound(identity)
    return state.record


def upserted(
    state: RecordState | None, record: ContinuityRecord, token: FencingToken
) -> tuple[RecordState, tuple[SessionId, ...]]:
    """The state after an upsert, and the sessions it evicts (their snapshots and
    bindings go in the same write)."""
    current = state.record if state is not None else None
    if current is not None:
        if record.generation < current.generation:
            raise GenerationMismatch(record.identity, record.generation, current.generation)
        if (
            record.generation == current.generation
            and record.checkpoint_version < current.checkpoint_version
        ):
            raise StaleCheckpointVersion(
                record.identity, record.checkpoint_version, current.checkpoint_version
            )
    fence = max(state.fence, token) if state is not None else token
    sessions = [s for s in (state.sessions if state is not None else ()) if s != record.session_id]
    sessions.append(record.session_id)
    evicted = tuple(sessions[:-MAX_SESSIONS_PER_IDENTITY])
    kept = tuple(sessions[-MAX_SESSIONS_PER_IDENTITY:])
    return RecordState(record.identity, record, fence, kept), evicted


def checked_save_target(
    identity: AgentIdentity, state: RecordState | None, session_id: str, generation: int
) -> ContinuityRecord:
    """The record a save would advance (after the fence check)."""
    record = live_record(identity, state)
    if generation != record.generation:
        raise GenerationMismatch(identity, generation, record.generation)
    if session_id != record.session_id:
        raise InvalidArgument(
            "session_id", f"{session_id!r} is not the record's session {record.session_id!r}"
        )
    return record


def is_replay(stored: bytes | None, header: SnapshotHeader) -> bool:
    """Whether the stored snapshot is exactly what this save would write."""
    if stored is None:
        return False
    try:
        current = snapshot_header(stored)
    except CorruptValue:
        return False
    return current == header


def saved(
    state: RecordState, record: ContinuityRecord, version: int, token: FencingToken
) -> RecordState:
    if version <= record.checkpoint_version:
        raise StaleCheckpointVersion(record.identity, version, record.checkpoint_version)
    advanced = ContinuityRecord(
        record.identity, record.agent_runtime_id, record.session_id, record.generation, version
    )
    return RecordState(state.identity, advanced, max(state.fence, token), state.sessions)


def deleted(identity: AgentIdentity, state: RecordState | None) -> RecordState:
    """The tombstone left by a delete (after the fence check): the fence survives."""
    live_record(identity, state)
    assert state is not None
    return RecordState(identity, None, state.fence, ())


def classify(
    identity: AgentIdentity,
    state: RecordState | CorruptValue | None,
    snapshot: bytes | Unreadable | None,
) -> ContinuityResolveState:
    """One identity's resolve state from its record and its current session's snapshot."""
    if isinstance(state, CorruptValue):
        return _broken(identity, ContinuityFailureKind.SNAPSHOT_CORRUPTED, None, str(state))
    if state is None or state.record is None:
        return Uninitialized()
    record = state.record
    if record.checkpoint_version == 0:
        return Ready(record)  # nothing checkpointed yet: nothing to resume from
    if isinstance(snapshot, Unreadable):
        return _broken(identity, ContinuityFailureKind.STORE_UNAVAILABLE, record, snapshot.detail)
    if snapshot is None:
        return _broken(
            identity,
            ContinuityFailureKind.SNAPSHOT_MISSING,
            record,
            f"record is at checkpoint {record.checkpoint_version} but session "
            f"{record.session_id!r} has no snapshot",
        )
    try:
        # Chunks are checked when the snapshot is loaded (a bad one fails the load with
        # StoreCorruption, which the orchestrator reports as Broken snapshot_corrupted).
        header = decode_snapshot(snapshot, identity, record.session_id).header
    except CorruptValue as exc:
        return _broken(identity, ContinuityFailureKind.SNAPSHOT_CORRUPTED, record, str(exc))
    if header.generation != record.generation:
        return _broken(
            identity,
            ContinuityFailureKind.GENERATION_MISMATCH,
            record,
            f"snapshot is of generation {header.generation}, record of {record.generation}",
        )
    if header.checkpoint_version != record.checkpoint_version:
        return _broken(
            identity,
            ContinuityFailureKind.SNAPSHOT_MISSING,
            record,
            f"record is at checkpoint {record.checkpoint_version}, the session's snapshot "
            f"at {header.checkpoint_version}",
        )
    return Ready(record)


def _broken(
    identity: AgentIdentity,
    kind: ContinuityFailureKind,
    record: ContinuityRecord | None,
    detail: str,
) -> Broken:
    return Broken(ContinuityFailure(identity, kind, record, detail))
