"""The stored form of continuity data, the same bytes in every engine.

One logical key space (engines map it onto etcd keys or SQLite rows)::

    records/<identity>               record state: the record (None once deleted), the
                                     highest fencing token seen, the identity's sessions
    snapshots/<identity>/<session>   snapshot envelope: checked header + the data
    sessions/<session>               binding: the identity that owns the session

Everything stored is self-checking: a record carries a CRC-32 of its body, a snapshot
header a CRC-32 of itself and the SHA-256 of the data (the content revision). A value
failing its checks raises :class:`CorruptValue`.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from mobkit.continuity.domain import content_revision
from mobkit.core.identity import AgentIdentity, AgentRuntimeId, SessionId, identity_problem
from mobkit.core.types import ContinuityRecord

RECORDS = b"records/"
SNAPSHOTS = b"snapshots/"
SESSIONS = b"sessions/"

_RECORD_MAGIC = b"MKR1"
_SNAPSHOT_MAGIC = b"MKS1"
_U32 = struct.Struct(">I")
_U32X2 = struct.Struct(">II")


class CorruptValue(Exception):
    """Stored bytes fail their checksum or cannot be decoded."""


# -- keys ---------------------------------------------------------------------------


def record_key(identity: str) -> bytes:
    return RECORDS + identity.encode()


def snapshot_prefix(identity: str) -> bytes:
    # Identities contain no '/', so this prefix selects exactly this identity's snapshots.
    return SNAPSHOTS + identity.encode() + b"/"


def snapshot_key(identity: str, session_id: str) -> bytes:
    return snapshot_prefix(identity) + session_id.encode()


def session_key(session_id: str) -> bytes:
    return SESSIONS + session_id.encode()


# -- records --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordState:
    """What the store keeps per identity."""

    identity: AgentIdentity
    record: ContinuityRecord | None
    """None once deleted: the state stays as a tombstone so the fence survives."""
    fence: int
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
        return RecordState(AgentIdentity(identity), record, _count(body["fence"]), sessions)
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
    fencing_token: int
    revision: str
    """Lowercase hex SHA-256 of the data: checksum and content revision at once."""
    size: int


def encode_snapshot(header: SnapshotHeader, data: bytes) -> bytes:
    raw = json.dumps(
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
    return b"".join((_SNAPSHOT_MAGIC, _U32X2.pack(zlib.crc32(raw), len(raw)), raw, data))


def decode_snapshot_header(value: bytes) -> tuple[SnapshotHeader, int]:
    """The header and the offset where the data starts; the data is not checked."""
    if len(value) < 12 or value[:4] != _SNAPSHOT_MAGIC:
        raise CorruptValue("snapshot: unknown format")
    crc, length = _U32X2.unpack_from(value, 4)
    raw = value[12 : 12 + length]
    if len(raw) != length or zlib.crc32(raw) != crc:
        raise CorruptValue("snapshot header: checksum mismatch")
    try:
        h = json.loads(raw)
        header = SnapshotHeader(
            identity=_text(h["identity"]),
            session_id=_text(h["session_id"]),
            generation=_count(h["generation"]),
            checkpoint_version=_count(h["checkpoint_version"]),
            fencing_token=_count(h["fencing_token"]),
            revision=_text(h["sha256"]),
            size=_count(h["size"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptValue(f"snapshot header: undecodable ({exc})") from exc
    return header, 12 + length


def decode_snapshot(value: bytes, identity: str, session_id: str) -> tuple[SnapshotHeader, bytes]:
    """Header and data of the snapshot stored under ``snapshots/<identity>/<session_id>``,
    with the data checked against the header's size and SHA-256."""
    header, offset = decode_snapshot_header(value)
    if header.identity != identity or header.session_id != session_id:
        raise CorruptValue(
            f"snapshot under {identity!r}/{session_id!r} names "
            f"{header.identity!r}/{header.session_id!r}"
        )
    data = value[offset:]
    if len(data) != header.size:
        raise CorruptValue(f"snapshot data: {len(data)} bytes stored, header says {header.size}")
    if content_revision(data) != header.revision:
        raise CorruptValue("snapshot data: SHA-256 mismatch")
    return header, data


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
