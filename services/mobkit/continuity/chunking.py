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


def split(data: bytes) -> list[tuple[ChunkRef, memoryview]]:
    """The chunks of ``data`` in order, with their bytes (views into ``data``)."""
    view = memoryview(data)
    out: list[tuple[ChunkRef, memoryview]] = []
    for chunk in _CUTTER.cut_buf(view):
        piece = view[chunk.offset : chunk.offset + chunk.length]
        out.append((ChunkRef(hashlib.sha256(piece).digest(), chunk.length), piece))
    return out


def is_chunked(size: int) -> bool:
    return size > INLINE_MAX_BYTES


@dataclass(frozen=True, slots=True)
class Cut:
    """Snapshot data cut into chunks, with its content revision (SHA-256 of all of it)."""

    chunks: tuple[tuple[ChunkRef, memoryview], ...]
    revision: str


@dataclass(slots=True)
class _Last:
    data: bytes
    chunks: tuple[tuple[ChunkRef, memoryview], ...]
    starts: tuple[int, ...]
    hashed: tuple[Any, ...]
    """SHA-256 state over ``data[:starts[i]]``, for each chunk ``i``."""


class IncrementalCutter:
    """Cuts a session's snapshots, reusing what it did for that session's last one.

    A session's next snapshot usually shares a long prefix with its last one (state
    appended to, or changed near its end). Every chunk that lies whole within that
    prefix, except the last one (cut by the end of the data, not by its content), ends
    where a fresh cut would end it: FastCDC decides a boundary from the bytes since the
    previous one only. So only the rest is cut and hashed again, and the content
    revision continues from the SHA-256 state saved at that chunk's start. A turn then
    costs a comparison of the prefix (memcmp speed) plus work on what changed, not a
    cut and two hashes of the whole state. The result is what :func:`split` and a
    fresh SHA-256 would give. Remembered data is bounded in bytes (least recently
    used sessions are forgotten)."""

    def __init__(self, max_bytes: int = 128 * 1024 * 1024) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._last: OrderedDict[tuple[str, str], _Last] = OrderedDict()

    def cut(self, key: tuple[str, str], data: bytes) -> Cut:
        last = self._last.pop(key, None)
        if last is not None:
            self._bytes -= len(last.data)
        view = memoryview(data)
        keep = 0
        if last is not None and len(last.chunks) > 1:
            # Reuse the chunks that match, but never the last old one. Compared with
            # bytes.startswith (memcmp, no copy): memoryview equality goes element by
            # element (1,000x slower), and slicing copies megabytes every turn.
            old = memoryview(last.data)
            if data.startswith(old[: last.starts[-1]]):  # the usual turn: an append
                keep = len(last.chunks) - 1
            else:
                for (ref, _), start in zip(last.chunks[:-1], last.starts, strict=False):
                    if not data.startswith(old[start : start + ref.length], start):
                        break
                    keep += 1
        start = last.starts[keep] if last is not None and keep else 0
        digest = last.hashed[keep].copy() if last is not None and keep else hashlib.sha256()
        starts = list(last.starts[:keep]) if last is not None else []
        kept = tuple(
            (ref, view[begin : begin + ref.length])  # views of the new data, not the old
            for (ref, _), begin in zip(last.chunks[:keep] if last else (), starts, strict=True)
        )
        hashed = list(last.hashed[:keep]) if last is not None else []
        fresh: list[tuple[ChunkRef, memoryview]] = []
        for chunk in _CUTTER.cut_buf(view[start:]):
            begin = start + chunk.offset
            piece = view[begin : begin + chunk.length]
            starts.append(begin)
            hashed.append(digest.copy())
            digest.update(piece)
            fresh.append((ChunkRef(hashlib.sha256(piece).digest(), chunk.length), piece))
        chunks = (*kept, *fresh)
        self._remember(key, _Last(data, chunks, tuple(starts), tuple(hashed)))
        return Cut(chunks, digest.hexdigest())

    def _remember(self, key: tuple[str, str], last: _Last) -> None:
        if len(last.data) > self._max_bytes:
            return
        self._last[key] = last
        self._bytes += len(last.data)
        while self._bytes > self._max_bytes:
            _, old = self._last.popitem(last=False)
            self._bytes -= len(old.data)

    def forget(self, key: tuple[str, str]) -> None:
        last = self._last.pop(key, None)
        if last is not None:
            self._bytes -= len(last.data)
