"""Module stderr logs: ``<data-dir>/modules/<id>.log``, rotated by size.

A module's stderr is a pipe, not the file: a thread per process copies it line by
line into a :class:`logging.handlers.RotatingFileHandler` (``<id>.log``, then
``<id>.log.1`` ... ``<id>.log.<backups>``, each at most ``max_bytes``), so one
module keeps at most ``(backups + 1) * max_bytes`` on disk however long it runs
and however often it restarts. The copy never runs on the event loop, and the
pipe is read to its end after the process exits, so a crash's last lines are
in the log and in :meth:`StderrPump.last_line` (the supervisor's crash detail).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import logging.handlers
import os
import threading
from pathlib import Path
from typing import TextIO

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 3
LINE_MAX = 64 * 1024  # a longer line is split: the copy's buffer stays bounded
TAIL_LINES = 20  # the last lines of the current process, kept in memory
_READ = 64 * 1024


class ModuleLog:
    """One module's rotating stderr log, shared by all its processes (restarts)."""

    def __init__(
        self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._lock = threading.Lock()
        self._closed = False

    def write(self, line: str) -> None:
        """Append one line (without its newline); rotates first when it would not fit."""
        record = logging.LogRecord("module", logging.INFO, "", 0, line, None, None)
        with self._lock:
            if not self._closed:  # a closed handler would reopen the file
                self._handler.emit(record)

    def pump(self) -> StderrPump:
        """A new pipe for one process's stderr, copied into this log."""
        return StderrPump(self)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._handler.close()


class StderrPump:
    """A pipe whose write end (:attr:`stderr`) becomes a child's stderr.

    Give :attr:`stderr` to the spawn, then call :meth:`spawned` (the child holds its
    own copy); the pump sees the end of the pipe when the child and whatever it
    spawned have closed it.
    """

    def __init__(self, log: ModuleLog) -> None:
        self._log = log
        read_fd, write_fd = os.pipe()  # not inheritable: other children never hold it
        self.stderr: TextIO = os.fdopen(write_fd, "w", encoding="utf-8")
        self._read_fd = read_fd
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._copy, name=f"stderr-{log.path.stem}", daemon=True
        )
        self._thread.start()

    def spawned(self) -> None:
        """Close this process's copy of the write end (idempotent)."""
        with contextlib.suppress(OSError):
            self.stderr.close()

    def _line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        self._log.write(line)
        if line.strip():
            self._tail.append(line.strip())

    def _copy(self) -> None:
        pending = b""
        try:
            while chunk := os.read(self._read_fd, _READ):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    self._line(raw)
                while len(pending) > LINE_MAX:
                    self._line(pending[:LINE_MAX])
                    pending = pending[LINE_MAX:]
            if pending:
                self._line(pending)
        except OSError:
            pass
        finally:
            os.close(self._read_fd)
            self._done.set()

    async def drained(self, timeout: float = 2.0) -> bool:
        """Wait (off the event loop) until the pipe has been read to its end."""
        if self._done.is_set():
            return True
        return await asyncio.to_thread(self._done.wait, timeout)

    def last_line(self) -> str:
        """The last non-empty line this process wrote."""
        return self._tail[-1] if self._tail else ""
