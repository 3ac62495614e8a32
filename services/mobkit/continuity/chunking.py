"""Content-defined chunking of snapshot data (FastCDC), so that a turn stores only what
changed.

A snapshot up to ``INLINE_MAX_BYTES`` is stored whole beside its header. A larger one
is cut by FastCDC into chunks of 4-64 KiB (16 KiB on average) at boundaries chosen by
the content itself: an insertion or an append moves the boundaries near the change
only, so every other chunk keeps its bytes and its SHA-256, and is not written again.

FastCDC's last chunk is different: it ends where the data ends, not at a boundary, so
every append changes it. It is the *tail*, stored as pieces of ``TAIL_PIECE_BYTES``
counted from its start: an append rewrites the last piece (1.5 KiB on average) instead
of the whole tail (10 KiB on average, up to 64 KiB), and once FastCDC finds a boundary
in the tail, the pieces before it give way to one chunk, written once.

The chunks of a snapshot live under its session (``codec.chunk_key``) and are named by
their digest, which is also their checksum.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, NamedTuple

from pyfastcdc import FastCDC

INLINE_MAX_BYTES = 4 * 1024
"""Snapshots up to this size are stored whole: one value, as before chunking existed.
Larger ones are chunked, so that a turn rewrites a tail piece, not the whole value."""

AVG_CHUNK_BYTES = 16 * 1024
MIN_CHUNK_BYTES = AVG_CHUNK_BYTES // 4
MAX_CHUNK_BYTES = AVG_CHUNK_BYTES * 4
"""A turn that changes a few bytes rewrites one or two chunks of at most this size, plus
the manifest (36 bytes per chunk): an 8 MiB state costs well under 128 KiB per turn."""

TAIL_PIECE_BYTES = 3 * 1024
"""With its key and etcd's record of it, a piece still fits one 4 KiB page of etcd's
database (a 4 KiB piece would take two). A tail of at most ``MAX_CHUNK_BYTES`` makes at
most ``MAX_TAIL_PIECES`` pieces; every other chunk is at least ``MIN_CHUNK_BYTES``."""
MAX_TAIL_PIECES = -(-MAX_CHUNK_BYTES // TAIL_PIECE_BYTES)

DIGEST_BYTES = 32

_CUTTER = FastCDC(avg_size=AVG_CHUNK_BYTES)
assert (_CUTTER.min_size, _CUTTER.max_size) == (MIN_CHUNK_BYTES, MAX_CHUNK_BYTES)


class ChunkRef(NamedTuple):
    """One chunk as a manifest lists it: SHA-256 of its bytes, and their length. A tuple,
    so sets of a few thousand compare and hash at C speed every turn."""

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

    data: bytes
    refs: tuple[ChunkRef, ...]
    starts: tuple[int, ...]
    revision: str

    def piece(self, index: int) -> memoryview:
        """The bytes of chunk ``index`` (a view into ``data``)."""
        start = self.starts[index]
        return memoryview(self.data)[start : start + self.refs[index].length]

    @property
    def chunks(self) -> tuple[tuple[ChunkRef, memoryview], ...]:
        return tuple((ref, self.piece(i)) for i, ref in enumerate(self.refs))


@dataclass(frozen=True, slots=True)
class _Last:
    data: bytes
    refs: tuple[ChunkRef, ...]
    starts: tuple[int, ...]
    hashed: tuple[Any, ...]
    """SHA-256 state over ``data[:starts[i]]``, for each chunk ``i``."""
    tail: int
    """Index of the first piece of the tail (FastCDC's last chunk)."""

    def reusable(self, data: bytes) -> int:
        """How many leading chunks ``data`` shares with this, never counting the tail
        (cut by the end of the data, not by its content). Compared with
        ``bytes.startswith`` (memcmp, no copy): memoryview equality goes element by
        element (1,000x slower), and slicing copies megabytes every turn."""
        old = memoryview(self.data)
        if self.tail == 0:
            return 0
        if data.startswith(old[: self.starts[self.tail]]):  # the usual turn: an append
            return self.tail
        keep = 0
        for ref, start in zip(self.refs[: self.tail], self.starts, strict=False):
            if not data.startswith(old[start : start + ref.length], start):
                break
            keep += 1
        return keep


class IncrementalCutter:
    """Cuts a session's snapshots, reusing what it did for that session's last one.

    A session's next snapshot usually shares a long prefix with its last one (state
    appended to, or changed near its end). Every chunk that lies whole within that
    prefix, except the tail, ends where a fresh cut would end it: FastCDC decides a
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
        bounds = [(start + c.offset, c.length) for c in _CUTTER.cut_buf(view[start:])]
        tail = len(refs) + max(0, len(bounds) - 1)
        if bounds:
            begin, length = bounds.pop()
            bounds += _pieces(begin, length)
        for begin, length in bounds:
            piece = view[begin : begin + length]
            starts.append(begin)
            hashed.append(digest.copy())
            digest.update(piece)
            refs.append(ChunkRef(hashlib.sha256(piece).digest(), length))
        cut = Cut(data, tuple(refs), tuple(starts), digest.hexdigest())
        self._remember(key, _Last(data, cut.refs, cut.starts, tuple(hashed), tail))
        return cut

    def _remember(self, key: tuple[str, str], last: _Last) -> None:
        if len(last.data) > self._max_bytes:
            return
        self._last[key] = last
        self._bytes += len(last.data)
        while self._bytes > self._max_bytes:
            _, old = self._last.popitem(last=False)
            self._bytes -= len(old.data)


def _pieces(begin: int, length: int) -> list[tuple[int, int]]:
    """The tail ``[begin, begin + length)`` as pieces of ``TAIL_PIECE_BYTES`` (the last
    one shorter)."""
    end = begin + length
    return [(at, min(TAIL_PIECE_BYTES, end - at)) for at in range(begin, end, TAIL_PIECE_BYTES)]
