"""Content-defined chunking of snapshot data (FastCDC), so that a turn stores only what
changed.

A snapshot up to ``INLINE_MAX_BYTES`` is stored whole beside its header. A larger one
is cut by FastCDC into chunks of 4-64 KiB (16 KiB on average) at boundaries chosen by
the content itself: an insertion or an append moves the boundaries near the change
only, so every other chunk keeps its bytes and its SHA-256, and is not written again.
The chunks of a snapshot live under its session (``codec.chunk_key``) and are named by
their digest, which is also their checksum.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pyfastcdc import FastCDC

INLINE_MAX_BYTES = 16 * 1024
"""Snapshots up to this size are stored whole: one value, as before chunking existed."""

AVG_CHUNK_BYTES = 16 * 1024
MIN_CHUNK_BYTES = AVG_CHUNK_BYTES // 4
MAX_CHUNK_BYTES = AVG_CHUNK_BYTES * 4
"""A turn that changes a few bytes rewrites one or two chunks of at most this size, plus
the manifest (36 bytes per chunk): an 8 MiB state costs well under 128 KiB per turn."""

DIGEST_BYTES = 32

_CUTTER = FastCDC(avg_size=AVG_CHUNK_BYTES)
assert (_CUTTER.min_size, _CUTTER.max_size) == (MIN_CHUNK_BYTES, MAX_CHUNK_BYTES)


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """One chunk as a manifest lists it: SHA-256 of its bytes, and their length."""

    digest: bytes
    length: int

    @property
    def name(self) -> str:
        return self.digest.hex()


def split(data: bytes) -> tuple[tuple[ChunkRef, memoryview], ...]:
    """The chunks of ``data`` in order, with their bytes (views into ``data``), cut
    afresh."""
    return IncrementalCutter(max_bytes=0).cut(("", ""), data).chunks


def is_chunked(size: int) -> bool:
    return size > INLINE_MAX_BYTES


@dataclass(frozen=True, slots=True)
class Cut:
    """Snapshot data cut into chunks, with its content revision (SHA-256 of all of it)."""

    chunks: tuple[tuple[ChunkRef, memoryview], ...]
    revision: str


@dataclass(frozen=True, slots=True)
class _Last:
    data: bytes
    refs: tuple[ChunkRef, ...]
    starts: tuple[int, ...]
    hashed: tuple[Any, ...]
    """SHA-256 state over ``data[:starts[i]]``, for each chunk ``i``."""

    def reusable(self, data: bytes) -> int:
        """How many leading chunks ``data`` shares with this, never counting the last
        (cut by the end of the data, not by its content). Compared with
        ``bytes.startswith`` (memcmp, no copy): memoryview equality goes element by
        element (1,000x slower), and slicing copies megabytes every turn."""
        old = memoryview(self.data)
        if len(self.refs) < 2:
            return 0
        if data.startswith(old[: self.starts[-1]]):  # the usual turn: an append
            return len(self.refs) - 1
        keep = 0
        for ref, start in zip(self.refs[:-1], self.starts, strict=False):
            if not data.startswith(old[start : start + ref.length], start):
                break
            keep += 1
        return keep


class IncrementalCutter:
    """Cuts a session's snapshots, reusing what it did for that session's last one.

    A session's next snapshot usually shares a long prefix with its last one (state
    appended to, or changed near its end). Every chunk that lies whole within that
    prefix, except the last one, ends where a fresh cut would end it: FastCDC decides a
    boundary from the bytes since the previous one only. So only the rest is cut and
    hashed again, and the content revision continues from the SHA-256 state saved at
    that chunk's start. A turn then costs a comparison of the prefix (memcmp speed)
    plus work on what changed, not a cut and two hashes of the whole state. The result
    is what a fresh cut and a fresh SHA-256 give. Remembered data is bounded in bytes
    (least recently used sessions are forgotten)."""

    def __init__(self, max_bytes: int = 128 * 1024 * 1024) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._last: OrderedDict[tuple[str, str], _Last] = OrderedDict()

    def cut(self, key: tuple[str, str], data: bytes) -> Cut:
        last = self._last.pop(key, None)
        if last is not None:
            self._bytes -= len(last.data)
        keep = last.reusable(data) if last is not None else 0
        refs = list(last.refs[:keep]) if last is not None else []
        starts = list(last.starts[:keep]) if last is not None else []
        hashed = list(last.hashed[:keep]) if last is not None else []
        start, digest = 0, hashlib.sha256()
        if last is not None and keep:
            start, digest = last.starts[keep], last.hashed[keep].copy()
        view = memoryview(data)
        for chunk in _CUTTER.cut_buf(view[start:]):
            begin = start + chunk.offset
            piece = view[begin : begin + chunk.length]
            starts.append(begin)
            hashed.append(digest.copy())
            digest.update(piece)
            refs.append(ChunkRef(hashlib.sha256(piece).digest(), chunk.length))
        self._remember(key, _Last(data, tuple(refs), tuple(starts), tuple(hashed)))
        chunks = tuple((r, view[b : b + r.length]) for r, b in zip(refs, starts, strict=True))
        return Cut(chunks, digest.hexdigest())

    def _remember(self, key: tuple[str, str], last: _Last) -> None:
        if len(last.data) > self._max_bytes:
            return
        self._last[key] = last
        self._bytes += len(last.data)
        while self._bytes > self._max_bytes:
            _, old = self._last.popitem(last=False)
            self._bytes -= len(old.data)
