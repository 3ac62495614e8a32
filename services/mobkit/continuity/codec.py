"""The stored form of continuity data, the same bytes in every engine.

One logical key space, defined in :mod:`mobkit.core.keyspace` (engines map it onto
etcd keys or SQLite rows)::

    records/<identity>               record state: the record (None once deleted), the
                                     highest fencing token seen, the identity's sessions
    snapshots/<identity>/<session>   snapshot: checked header + the data (small ones), or
                                     header + manifest (the chunks, in order)
    chunks/<identity>/<tag>/<sha256> one chunk of a session's snapshot (``tag``: a hash
                                     of the session id), named by its digest
    sessions/<session>               binding: the identity that owns the session
    receipts/<identity>/<sha256>     a turn's receipt, by the SHA-256 of its idempotency
                                     key; expires (engines drop it after its deadline)

Everything stored is self-checking: a record carries a CRC-32 of its body, a snapshot
header a CRC-32 of itself (and of its manifest) and the SHA-256 of the data (the content
revision), a chunk is named by its SHA-256, a receipt carries a CRC-32. A value failing
its checks raises :class:`CorruptValue`.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import starmap
from operator import itemgetter
from typing import Any

from mobkit.continuity.chunking import DIGEST_BYTES, ChunkRef
from mobkit.continuity.domain import content_revision
from mobkit.core import keyspace
from mobkit.core.identity import (
    AgentIdentity,
    AgentRuntimeId,
    FencingToken,
    SessionId,
    identity_problem,
)
from mobkit.core.keyspace import (  # re-exported: the engines and tests use them here
    CHUNKS as CHUNKS,
)
from mobkit.core.keyspace import (
    RECEIPTS as RECEIPTS,
)
from mobkit.core.keyspace import (
    RECORDS as RECORDS,
)
from mobkit.core.keyspace import (
    SESSIONS as SESSIONS,
)
from mobkit.core.keyspace import (
    SNAPSHOTS as SNAPSHOTS,
)
from mobkit.core.keyspace import (
    chunk_prefix as chunk_prefix,
)
from mobkit.core.keyspace import (
    receipt_key as receipt_key,
)
from mobkit.core.keyspace import (
    receipt_prefix as receipt_prefix,
)
from mobkit.core.keyspace import (
    record_key as record_key,
)
from mobkit.core.keyspace import (
    session_chunk_prefix as session_chunk_prefix,
)
from mobkit.core.keyspace import (
    session_key as session_key,
)
from mobkit.core.keyspace import (
    snapshot_key as snapshot_key,
)
from mobkit.core.keyspace import (
    snapshot_prefix as snapshot_prefix,
)
from mobkit.core.types import ContinuityRecord

_RECORD_MAGIC = b"MKR1"
_SNAPSHOT_MAGIC = b"MKS1"
_MANIFEST_MAGIC = b"MKS2"
_RECEIPT_MAGIC = b"MKT1"
_U32 = struct.Struct(">I")
_U32X2 = struct.Struct(">II")
_CHUNK_REF = struct.Struct(f">{DIGEST_BYTES}sI")
_LENGTH = itemgetter(1)


class CorruptValue(Exception):
    """Stored bytes fail their checksum or cannot be decoded."""


# -- keys ---------------------------------------------------------------------------
# The logical layout is mobkit.core.keyspace's (re-exported here for the engines).


def chunk_key(identity: str, session_id: str, ref: ChunkRef) -> bytes:
    return keyspace.chunk_key(identity, session_id, ref.name)


# -- records --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordState:
    """What the store keeps per identity."""

    identity: AgentIdentity
    record: ContinuityRecord | None
    """None once deleted: the state stays as a tombstone so the fence survives."""
    fence: FencingToken
    """The highest fencing token that has written this identity."""
    sessions: tuple[SessionId, ...] = ()
    """Sessions bound to the identity (their snapshots live under it), oldest first."""


def encode_record(state: RecordState) -> bytes:
    rec = state.record
    body: dict[str, Any] = {
        "identity": state.identity,
        "fence": state.fence,
        "sessions": list(state.sessions),
        "record": None
        if rec is None
        else {
            "agent_runtime_id": rec.agent_runtime_id,
            "session_id": rec.session_id,
            "generation": rec.generation,
            "checkpoint_version": rec.checkpoint_version,
        },
    }
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return _RECORD_MAGIC + _U32.pack(zlib.crc32(raw)) + raw


def decode_record(value: bytes, identity: str) -> RecordState:
    """The record state stored under ``records/<identity>``."""
    if len(value) < 8 or value[:4] != _RECORD_MAGIC:
        raise CorruptValue(f"record of {identity!r}: unknown format")
    (crc,) = _U32.unpack_from(value, 4)
    raw = value[8:]
    if zlib.crc32(raw) != crc:
        raise CorruptValue(f"record of {identity!r}: checksum mismatch")
    try:
        body = json.loads(raw)
        if body["identity"] != identity:
            raise CorruptValue(f"record under {identity!r} names {body['identity']!r}")
        rec = body["record"]
        record = (
            None
            if rec is None
            else ContinuityRecord(
                identity=AgentIdentity(identity),
                agent_runtime_id=AgentRuntimeId(_text(rec["agent_runtime_id"])),
                session_id=SessionId(_text(rec["session_id"])),
                generation=_count(rec["generation"]),
                checkpoint_version=_count(rec["checkpoint_version"]),
            )
        )
        sessions = tuple(SessionId(_text(s)) for s in body["sessions"])
        fence = FencingToken(_count(body["fence"]))
        return RecordState(AgentIdentity(identity), record, fence, sessions)
    except CorruptValue:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptValue(f"record of {identity!r}: undecodable ({exc})") from exc


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


# -- snapshots ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    """What a snapshot was saved under, stored in front of its data."""

    identity: str
    session_id: str
    generation: int
    checkpoint_version: int
    fencing_token: FencingToken
    revision: str
    """Lowercase hex SHA-256 of the data: checksum and content revision at once."""
    size: int


def _header_json(header: SnapshotHeader) -> bytes:
    return json.dumps(
        {
            "identity": header.identity,
            "session_id": header.session_id,
            "generation": header.generation,
            "checkpoint_version": header.checkpoint_version,
            "fencing_token": header.fencing_token,
            "sha256": header.revision,
            "size": header.size,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


def encode_snapshot(header: SnapshotHeader, data: bytes) -> bytes:
    """A snapshot stored whole: the header's CRC covers the header, the SHA-256 the data."""
    raw = _header_json(header)
    return b"".join((_SNAPSHOT_MAGIC, _U32X2.pack(zlib.crc32(raw), len(raw)), raw, data))


def encode_manifest(header: SnapshotHeader, chunks: Sequence[ChunkRef]) -> bytes:
    """A chunked snapshot: header and manifest, one CRC over both."""
    raw = _header_json(header)
    body = raw + b"".join(starmap(_CHUNK_REF.pack, chunks))  # C speed: every turn does it
    return b"".join((_MANIFEST_MAGIC, _U32X2.pack(zlib.crc32(body), len(raw)), body))


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    """A decoded ``snapshots/`` value: the header, then either the data (stored whole;
    not yet checked against the header) or the chunks that make it up, in order."""

    header: SnapshotHeader
    inline: memoryview | None
    chunks: tuple[ChunkRef, ...] = ()


def decode_stored_snapshot(value: bytes) -> StoredSnapshot:
    """Header and body of a stored snapshot; checks the CRC of the header (and of the
    manifest), not the data."""
    magic = value[:4]
    if len(value) < 12 or magic not in (_SNAPSHOT_MAGIC, _MANIFEST_MAGIC):
        raise CorruptValue("snapshot: unknown format")
    crc, length = _U32X2.unpack_from(value, 4)
    raw = value[12 : 12 + length]
    if len(raw) != length:
        raise CorruptValue("snapshot header: truncated")
    checked = raw if magic == _SNAPSHOT_MAGIC else value[12:]
    if zlib.crc32(checked) != crc:
        raise CorruptValue("snapshot header: checksum mismatch")
    header = _decode_header(raw)
    if magic == _SNAPSHOT_MAGIC:
        return StoredSnapshot(header, memoryview(value)[12 + length :])
    manifest = memoryview(value)[12 + length :]
    if len(manifest) % _CHUNK_REF.size:
        raise CorruptValue("snapshot manifest: truncated")
    chunks = tuple(map(ChunkRef._make, _CHUNK_REF.iter_unpack(manifest)))
    if sum(map(_LENGTH, chunks)) != header.size:
        raise CorruptValue(f"snapshot manifest: chunks do not add up to {header.size} bytes")
    return StoredSnapshot(header, None, chunks)


def manifest_entries(value: bytes) -> frozenset[tuple[bytes, int]]:
    """The ``(digest, length)`` pairs the manifest of a stored snapshot names (none for
    one stored whole), checked by its CRC only: what a save reuses, every turn, with no
    object made per chunk (a :class:`ChunkRef` equals its pair)."""
    magic = value[:4]
    if len(value) < 12 or magic not in (_SNAPSHOT_MAGIC, _MANIFEST_MAGIC):
        raise CorruptValue("snapshot: unknown format")
    if magic == _SNAPSHOT_MAGIC:
        return frozenset()
    crc, length = _U32X2.unpack_from(value, 4)
    body = memoryview(value)[12:]
    if len(body) < length or (len(body) - length) % _CHUNK_REF.size or zlib.crc32(body) != crc:
        raise CorruptValue("snapshot manifest: checksum mismatch")
    return frozenset(_CHUNK_REF.iter_unpack(body[length:]))


def _decode_header(raw: bytes) -> SnapshotHeader:
    try:
        h = json.loads(raw)
        return SnapshotHeader(
            identity=_text(h["identity"]),
            session_id=_text(h["session_id"]),
            generation=_count(h["generation"]),
            checkpoint_version=_count(h["checkpoint_version"]),
            fencing_token=FencingToken(_count(h["fencing_token"])),
            revision=_text(h["sha256"]),
            size=_count(h["size"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptValue(f"snapshot header: undecodable ({exc})") from exc


def snapshot_header(value: bytes) -> SnapshotHeader:
    return decode_stored_snapshot(value).header


def decode_snapshot(value: bytes, identity: str, session_id: str) -> StoredSnapshot:
    """The snapshot stored under ``snapshots/<identity>/<session_id>``, checked as far as
    its own value allows: the header names this session, and data stored whole matches
    the header's size and SHA-256 (chunks are checked by :func:`assemble`)."""
    stored = decode_stored_snapshot(value)
    header = stored.header
    if header.identity != identity or header.session_id != session_id:
        raise CorruptValue(
            f"snapshot under {identity!r}/{session_id!r} names "
            f"{header.identity!r}/{header.session_id!r}"
        )
    if stored.inline is not None:
        if len(stored.inline) != header.size:
            raise CorruptValue(
                f"snapshot data: {len(stored.inline)} bytes stored, header says {header.size}"
            )
        if content_revision(stored.inline) != header.revision:
            raise CorruptValue("snapshot data: SHA-256 mismatch")
    return stored


def assemble(stored: StoredSnapshot, chunks: Sequence[bytes | None]) -> bytes:
    """The snapshot's data from its chunks' stored values (in manifest order), each
    checked against its digest and the whole against the content revision."""
    if stored.inline is not None:
        return bytes(stored.inline)
    parts: list[bytes] = []
    for index, (ref, value) in enumerate(zip(stored.chunks, chunks, strict=True)):
        if value is None:
            raise CorruptValue(f"snapshot chunk {index} ({ref.name[:16]}...) is missing")
        if len(value) != ref.length or hashlib.sha256(value).digest() != ref.digest:
            raise CorruptValue(f"snapshot chunk {index} ({ref.name[:16]}...): SHA-256 mismatch")
        parts.append(value)
    data = b"".join(parts)
    if content_revision(data) != stored.header.revision:
        raise CorruptValue("snapshot data: SHA-256 mismatch")
    return data


# -- receipts -------------------------------------------------------------------------


def encode_receipt(idempotency_key: str, data: bytes, expires_at_ms: int) -> bytes:
    raw = json.dumps({"key": idempotency_key, "expires_at_ms": expires_at_ms}).encode()
    body = raw + data
    return b"".join((_RECEIPT_MAGIC, _U32X2.pack(zlib.crc32(body), len(raw)), body))


def decode_receipt(value: bytes, idempotency_key: str) -> tuple[bytes, int]:
    """A stored receipt's data and its deadline (ms since the epoch)."""
    if len(value) < 12 or value[:4] != _RECEIPT_MAGIC:
        raise CorruptValue("receipt: unknown format")
    crc, length = _U32X2.unpack_from(value, 4)
    if zlib.crc32(value[12:]) != crc or len(value) < 12 + length:
        raise CorruptValue("receipt: checksum mismatch")
    try:
        head = json.loads(value[12 : 12 + length])
        key, expires = head["key"], _count(head["expires_at_ms"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptValue(f"receipt: undecodable ({exc})") from exc
    if key != idempotency_key:
        raise CorruptValue("receipt: stored for another idempotency key")
    return bytes(value[12 + length :]), expires


# -- session bindings ------------------------------------------------------------------


def encode_binding(identity: str) -> bytes:
    return identity.encode()


def decode_binding(value: bytes, session_id: str) -> AgentIdentity:
    try:
        identity = value.decode()
    except UnicodeDecodeError as exc:
        raise CorruptValue(f"session {session_id!r}: owner undecodable") from exc
    if identity_problem(identity) is not None:
        raise CorruptValue(f"session {session_id!r}: owner {identity!r} is not an identity")
    return AgentIdentity(identity)
