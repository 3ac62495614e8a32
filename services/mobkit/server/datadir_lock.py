"""One ``mobkit up`` per data dir.

Two suites on one data dir would share its etcd and SQLite file and pass
identities back and forth between them. ``<data-dir>/mobkit.lock`` is held with
``flock`` for the life of the process (the kernel drops it when the process dies,
however it dies) and says who holds it: the pid and the address it serves, so a
second ``up`` refuses in one line before it loads, binds or starts anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from mobkit.server.startup import StartupError

LOCK_FILE = "mobkit.lock"


class DataDirBusy(StartupError):
    """Another process holds the data dir's lock (the message names it)."""


class DataDirLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: str | Path, address: str) -> DataDirLock:
        """Hold ``data_dir``'s lock, recording this process and ``address``, or raise
        :class:`DataDirBusy` naming the holder."""
        path = Path(data_dir) / LOCK_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise DataDirBusy(
                f"data dir {Path(data_dir).resolve()} is in use by mobkit up "
                f"(pid {holder.get('pid', '?')}, serving {holder.get('address', '?')}): "
                "stop it first, or give another --data-dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        lock = cls(path, fd)
        lock.record(address)
        return lock

    def record(self, address: str) -> None:
        """Say which address the holder serves (once a port 0 is known, say)."""
        if self._fd is None:
            return
        data = json.dumps({"pid": os.getpid(), "address": address}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Drop the lock; the file stays (removing it would race with the next holder)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read(fd: int) -> dict[str, object]:
    """The holder's record (empty for the instant the holder rewrites it)."""
    try:
        value = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
