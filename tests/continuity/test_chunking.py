"""The incremental cutter gives exactly what a fresh cut and a fresh SHA-256 give."""

from __future__ import annotations

import hashlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from pyfastcdc import FastCDC

from mobkit.continuity import chunking

FASTCDC = FastCDC(avg_size=chunking.AVG_CHUNK_BYTES)

edits = st.lists(
    st.tuples(st.sampled_from(["append", "insert", "replace", "truncate"]), st.integers(0, 2**31)),
    min_size=1,
    max_size=6,
)


def _fastcdc_with_tail_pieces(data: bytes) -> list[int]:
    lengths = [c.length for c in FASTCDC.cut_buf(data)]
    if not lengths:
        return []
    tail = lengths.pop()
    whole, rest = divmod(tail, chunking.TAIL_PIECE_BYTES)
    return lengths + [chunking.TAIL_PIECE_BYTES] * whole + ([rest] if rest else [])


def _edit(data: bytes, kind: str, seed: int) -> bytes:
    rng = random.Random(seed)
    at = rng.randrange(len(data) + 1)
    blob = rng.randbytes(rng.randrange(1, 3000))
    if kind == "append":
        return data + blob
    if kind == "insert":
        return data[:at] + blob + data[at:]
    if kind == "replace":
        return data[:at] + blob + data[at + len(blob) :]
    return data[:at]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), size=st.integers(0, 600_000), steps=edits)
def test_incremental_cuts_equal_fresh_cuts(seed: int, size: int, steps: list) -> None:
    cutter = chunking.IncrementalCutter()
    data = random.Random(seed).randbytes(size)
    for kind, edit_seed in [("append", 0), *steps]:
        cut = cutter.cut(("planner", "s-1"), data)
        fresh = chunking.split(data)
        assert [ref for ref, _ in cut.chunks] == [ref for ref, _ in fresh]
        # ... and a fresh cut is FastCDC's own, its last chunk (the tail) in pieces, each
        # chunk named by its SHA-256.
        assert [ref.length for ref, _ in fresh] == _fastcdc_with_tail_pieces(data)
        for ref, piece in fresh:
            assert ref.digest == hashlib.sha256(piece).digest()
        assert b"".join(bytes(piece) for _, piece in cut.chunks) == data
        assert cut.revision == hashlib.sha256(data).hexdigest()
        data = _edit(data, kind, edit_seed)


def test_the_cutter_remembers_a_bounded_number_of_bytes() -> None:
    cutter = chunking.IncrementalCutter(max_bytes=1_000_000)
    for i in range(10):
        cutter.cut(("planner", f"s-{i}"), random.Random(i).randbytes(300_000))
    assert cutter._bytes <= 1_000_000 and len(cutter._last) == 3


def test_an_append_rewrites_the_last_piece_of_the_tail_not_the_whole_tail() -> None:
    cutter = chunking.IncrementalCutter()
    data = random.Random(1).randbytes(1_000_000)
    before = set(cutter.cut(("planner", "s-1"), data).refs)
    written = []
    for turn in range(200):
        data += b"note %04d." % turn  # ten bytes, like a notebook's new note
        refs = cutter.cut(("planner", "s-1"), data).refs
        written.append(sum(ref.length for ref in refs if ref not in before))
        assert all(ref.length >= chunking.TAIL_PIECE_BYTES for ref in refs[:-1])
        before = set(refs)
    # Usually the last piece (half a piece on average); once FastCDC finds a boundary in
    # the tail, one chunk up to its maximum and the pieces after it.
    assert sum(written) / len(written) <= chunking.TAIL_PIECE_BYTES
    assert max(written) <= chunking.MAX_CHUNK_BYTES + 2 * chunking.TAIL_PIECE_BYTES
