"""The served process's memory setup: glibc keeps growing buffers on its heap, and the
start-up heap is frozen out of the garbage collector's full collections."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest

from mobkit.server import memory

GLIBC = sys.platform.startswith("linux") and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith(
    "glibc"
)

# A turn's copy of a state that grows a little every turn; prints the page faults it cost.
_GROWING_COPIES = """
import resource, sys
from mobkit.server.memory import keep_large_buffers
applied = keep_large_buffers() if sys.argv[1] == "tuned" else False
state = b"x" * (2 * 1024 * 1024)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for turn in range(50):
    state = state + b"note %04d" % turn
    copy = b"MKC2" + state
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    out = subprocess.run(
        [sys.executable, "-c", _GROWING_COPIES, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_growing_buffers_reuse_the_heap_instead_of_fresh_pages() -> None:
    applied, tuned = _faults("tuned")
    _, untuned = _faults("plain")
    assert applied
    # Untuned, most copies are fresh mmaps: a page fault per 4 KiB of each (~23,000 in
    # all with glibc 2.36); tuned, the heap's freed memory is reused (~2,000).
    assert untuned > 5_000
    assert tuned * 4 < untuned


def test_the_operators_own_malloc_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert memory.keep_large_buffers() is False
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072")
    assert memory.keep_large_buffers() is False


def test_start_up_objects_are_frozen_out_of_full_collections() -> None:
    try:
        memory.freeze_startup_objects()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
