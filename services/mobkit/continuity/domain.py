"""The continuity store port (CONTRACT-01) and the input rules every implementation shares.

No gRPC here. Errors are the domain errors of :mod:`mobkit.core.errors`
(``StaleFencingToken``, ``StaleCheckpointVersion``, ``GenerationMismatch``,
``ContinuityRecordNotFound``, ``StoreCorruption``, ``SnapshotTooLarge``,
``StoreUnavailable``) plus ``InvalidIdentity`` / ``InvalidArgument`` for bad input,
which is always refused before any state is read or changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, Self, runtime_checkable

from mobkit.core.errors import ContinuityStoreError, InvalidArgument, Metadata
from mobkit.core.identity import AgentIdentity, FencingToken, SessionId
from mobkit.core.types import (
    Checkpoint,
    ContinuityHealth,
    ContinuityRecord,
    ContinuityResolveState,
    SessionSnapshot,
)

DEFAULT_SNAPSHOT_LIMIT_BYTES = 64 * 1024 * 1024
"""``Settings.snapshot_limit_bytes``. Larger snapshots are refused (``SNAPSHOT_TOO_LARGE``).
Snapshots above 4 KiB are stored in content-defined chunks (:mod:`.chunking`)."""

DEFAULT_RECEIPT_RETENTION_SECONDS = 24 * 3600.0
"""``Settings.idempotency_retention``: how long a turn's receipt answers a repeated
idempotency key (Restate's default, too). Afterwards the store drops it."""

MAX_RECEIPT_BYTES = 256 * 1024
"""A stored receipt's size limit; the orchestrator bounds a receipt's output well below
it (``Settings.receipt_output_limit_bytes``)."""

MAX_IDEMPOTENCY_KEY_BYTES = 1024

MAX_COUNTER = 2**63 - 1
"""Tokens, generations and versions are uint64 on the wire but int64 in SQLite and etcd
(revisions are int64), so larger values are refused as invalid input."""

MAX_SESSION_ID_CHARS = 256

UNBOUNDED_LOSS_WINDOW_MS = 2**64 - 1
"""``BufferedExport`` window meaning "everything acknowledged may be lost" (the memory
store; a remote store that never answered)."""

MAX_SESSIONS_PER_IDENTITY = 16
"""An identity keeps the snapshots of its most recent sessions only; an upsert that moves
the record to a 17th session drops the oldest session's snapshot in the same write."""


ResolveEntry = tuple[AgentIdentity, ContinuityResolveState]


@dataclass(frozen=True, slots=True)
class LoadedSnapshot:
    """A stored snapshot with what it was saved under."""

    snapshot: SessionSnapshot
    revision: str
    """Content revision: lowercase hex SHA-256 of ``snapshot.data``."""
    generation: int
    checkpoint_version: int


@dataclass(frozen=True, slots=True)
class TurnReceipt:
    """A receipt to commit with a checkpoint, found again by its idempotency key. The
    store keeps ``data`` opaque: the orchestrator's encoding of the turn's answer."""

    idempotency_key: str
    data: bytes


@dataclass(frozen=True, slots=True)
class StoredReceipt:
    idempotency_key: str
    data: bytes
    expires_at_ms: int
    """Past this (ms since the epoch) the key no longer finds the receipt."""


class SessionRecord(NamedTuple):
    """``resolve_record_by_session``: the record, the highest fencing token that wrote
    it, and the checkpoint version of the session's newest snapshot (0: none saved)."""

    record: ContinuityRecord
    fencing_token: FencingToken
    checkpoint_version: int


class IncompleteResolve(ContinuityStoreError):
    """A provider answered ``resolve_many`` without exactly one entry per identity, in
    order. The seed treats a missing entry as a provider error, never as Uninitialized."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"resolve_many answered incompletely: {detail}", detail=detail)
        self.detail = detail

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["detail"])


@runtime_checkable
class ContinuityStore(Protocol):
    """Authoritative durable state for identity-first continuity.

    Implementations: :class:`~mobkit.continuity.memory.MemoryContinuityStore`,
    :class:`~mobkit.continuity.sqlite_backend.SqliteContinuityStore`,
    :class:`~mobkit.continuity.etcd_backend.EtcdContinuityStore` and the gRPC adapter
    :class:`~mobkit.continuity.client.GrpcContinuityStore`.

    Every write carries a fencing token: a token lower than the highest one that has
    written the identity (or, on etcd shared with the lease service, not the
    ``create_revision`` of the identity's lease key) raises ``StaleFencingToken`` and
    changes nothing. A write changes its record and snapshot together or not at all.
    """

    async def resolve_many(self, identities: Sequence[str]) -> list[ResolveEntry]:
        """Exactly one ``(identity, state)`` per requested identity, in request order:
        ``Uninitialized``, ``Ready`` or ``Broken`` (a corrupt or unreadable snapshot is a
        ``Broken`` entry, not an error). Duplicates are ``InvalidArgument``."""
        ...

    async def load_session_snapshot(self, session_id: str) -> LoadedSnapshot | None:
        """The session's snapshot, or None when none was saved. A snapshot failing its
        checksum raises ``StoreCorruption``."""
        ...

    async def save_session_snapshot(
        self, checkpoint: Checkpoint, receipt: TurnReceipt | None = None
    ) -> str:
        """Store ``checkpoint.snapshot`` and advance the record's ``checkpoint_version``
        to the checkpoint's; returns the snapshot's content revision. ``receipt`` is
        committed in the same atomic step, kept for the store's retention.

        Needs an existing record with the checkpoint's ``session_id`` and ``generation``
        and a ``checkpoint_version`` above the record's. Re-sending a save that already
        committed (an equal checkpoint) succeeds without change."""
        ...

    async def load_receipt(self, identity: str, idempotency_key: str) -> StoredReceipt | None:
        """The receipt saved with ``idempotency_key`` for ``identity``, or None when there
        is none or it is past its retention."""
        ...

    async def upsert_continuity_record(
        self, record: ContinuityRecord, fencing_token: FencingToken
    ) -> None:
        """Create or replace the identity's record. Idempotent. The generation never
        goes back (``GenerationMismatch``) nor, within a generation, the checkpoint
        version (``StaleCheckpointVersion``)."""
        ...

    async def delete_continuity_record(self, identity: str, fencing_token: FencingToken) -> None:
        """Delete the record and the identity's snapshots; it then resolves
        ``Uninitialized``. ``ContinuityRecordNotFound`` when there is no record (also on
        a retry). The highest fencing token seen survives the deletion."""
        ...

    async def delete_session_snapshot_if_current_revision(
        self, session_id: str, expected_current_revision: str
    ) -> bool:
        """Compare-and-delete: True only if the session's snapshot still had that
        content revision and was deleted."""
        ...

    async def resolve_record_by_session(self, session_id: str) -> SessionRecord | None:
        """The record whose current session is ``session_id``; None only when the store
        authoritatively has none (a store that cannot answer raises)."""
        ...

    async def health(self, identity: str | None = None) -> ContinuityHealth:
        """Reachability, durability policy and (for ``identity``) its latest checkpoint
        version. Never raises for an unreachable store: ``store_reachable=False``."""
        ...


# -- input rules shared by every implementation ---------------------------------------


def content_revision(data: bytes | memoryview) -> str:
    """The content revision of snapshot bytes (compared by compare-and-delete)."""
    return hashlib.sha256(data).hexdigest()


def check_counter(field: str, value: int, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(field, f"must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise InvalidArgument(field, f"must be >= {minimum}, got {value}")
    if value > MAX_COUNTER:
        raise InvalidArgument(field, f"must be < 2^63, got {value}")
    return value


def check_fencing_token(value: int) -> FencingToken:
    """Tokens are etcd create revisions: never 0."""
    return FencingToken(check_counter("fencing_token", value, minimum=1))


def parse_session_id(value: str, field: str = "session_id") -> SessionId:
    """Non-empty, at most 256 characters, no whitespace or control characters."""
    if not isinstance(value, str):
        raise InvalidArgument(field, f"must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidArgument(field, "must not be empty")
    if len(value) > MAX_SESSION_ID_CHARS:
        raise InvalidArgument(field, f"must be at most {MAX_SESSION_ID_CHARS} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise InvalidArgument(field, "must not contain whitespace or control characters")
    return SessionId(value)


def parse_idempotency_key(value: str, field: str = "idempotency_key") -> str:
    if not isinstance(value, str):
        raise InvalidArgument(field, f"must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidArgument(field, "must not be empty")
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise InvalidArgument(field, "must be valid Unicode text") from None
    if size > MAX_IDEMPOTENCY_KEY_BYTES:
        raise InvalidArgument(field, f"must be at most {MAX_IDEMPOTENCY_KEY_BYTES} bytes")
    return value


def parse_revision(value: str, field: str = "expected_current_revision") -> str:
    """A content revision: 64 lowercase hex digits."""
    if (
        not isinstance(value, str)
        or len(value) != 64
        or any(ch not in "0123456789abcdef" for ch in value)
    ):
        raise InvalidArgument(field, "must be 64 lowercase hex digits (a SHA-256)")
    return value


def check_resolve_entries(
    requested: Sequence[str], entries: Sequence[ResolveEntry]
) -> list[ResolveEntry]:
    """Enforce the batch contract on a provider's answer (servicer and client check it)."""
    if len(entries) != len(requested):
        raise IncompleteResolve(f"{len(requested)} identities asked, {len(entries)} answered")
    for want, (got, _) in zip(requested, entries, strict=True):
        if want != got:
            raise IncompleteResolve(f"expected an entry for {want!r}, got {got!r}")
    return list(entries)
