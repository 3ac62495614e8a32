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
from dataclasses import dataclass

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
