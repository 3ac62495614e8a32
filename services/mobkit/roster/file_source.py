"""A roster file (TOML), watched by polling.

Polling (default every 0.25 s) needs no extra dependency and works on every
filesystem, network mounts included. Each poll costs one ``stat``; the file is
read only when its stat changed, or while its mtime is too recent to trust
(two writes within one timestamp tick look alike: "racy" files are re-read
until their mtime is old).

A new content is accepted only once it has settled: its mtime is older than
one poll interval, or two reads one interval apart gave the same bytes. An
editor that rewrites the file in place is thus not caught half-way through a
write, where a truncated file could still be valid TOML with fewer agents.

Revision: ``max(previous + 1, mtime_ns of the file read)``. Within a process it
grows with every accepted change; across restarts it starts again from the
file's mtime, which ordinary edits only move forward, so a restarted provider
does not go back in time. (Replacing the file by an older one while keeping
that older mtime, e.g. ``cp -p``, can.) Providers reading the same file agree
on the revision as long as each change has its own mtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from pathlib import Path

from mobkit.core.errors import RosterInvalid, RosterUnavailable
from mobkit.roster.document import NO_RULES, RosterRules, parse_roster_toml
from mobkit.roster.domain import RosterProblem
from mobkit.roster.state import RosterState

log = logging.getLogger("mobkit.roster")

DEFAULT_POLL_INTERVAL = 0.25
RACY_NS = 2_000_000_000  # mtimes younger than this may hide a same-tick rewrite


class FileRoster(RosterState):
    """Serves a TOML roster file and follows its edits (see module doc)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        rules: RosterRules = NO_RULES,
    ) -> None:
        super().__init__(f"file {path}")
        if not poll_interval > 0:
            raise ValueError("poll_interval must be positive")
        self.path = Path(path)
        self.poll_interval = poll_interval
        self._rules = rules
        self._lock = asyncio.Lock()
        self._stat_key: tuple[int, ...] | None = None
        self._racy = True
        self._digest: bytes | None = None  # of the last content handled (accepted or rejected)
        self._pending: bytes | None = None  # digest of a content waiting to settle
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> FileRoster:
        """Read the file once (settled or not), then poll it in the background."""
        await self._read(settle=False)
        self._task = asyncio.create_task(self._poll(), name=f"roster-poll {self.path}")
        return self

    async def close(self) -> None:
        """Stop following the source; open watches end with BACKEND_UNAVAILABLE."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self.fail(RosterUnavailable("the roster provider was closed", self.source))

    async def refresh(self) -> None:
        await self._read(settle=True)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self._read(settle=True)
            except Exception:  # keep polling: the next edit may fix it
                log.exception("polling roster file %s failed", self.path)

    async def _read(self, *, settle: bool) -> None:
        async with self._lock:
            try:
                st = self.path.stat()
            except OSError as exc:
                self._forget()
                self.reject(_unreadable(self.path, exc))
                return
            key = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)
            if key == self._stat_key and not self._racy and self._pending is None:
                return
            try:
                data = await asyncio.to_thread(self.path.read_bytes)
            except OSError as exc:
                self._forget()
                self.reject(_unreadable(self.path, exc))
                return
            now = time.time_ns()
            age = now - st.st_mtime_ns
            self._stat_key, self._racy = key, age < RACY_NS
            digest = hashlib.sha256(data).digest()
            if digest == self._digest:
                self._pending = None
                return
            settled = not settle or age >= self.poll_interval * 1e9 or digest == self._pending
            if not settled:
                self._pending = digest  # look again next poll
                return
            self._pending, self._digest = None, digest
            try:
                document = parse_roster_toml(data, rules=self._rules)
            except RosterInvalid as exc:
                self.reject(RosterProblem.from_error(exc))
                return
            self.accept(document, revision=max(self.revision + 1, st.st_mtime_ns))

    def _forget(self) -> None:
        # The next readable content counts as new, even if it equals the last one.
        self._stat_key = self._digest = self._pending = None


def _unreadable(path: Path, exc: OSError) -> RosterProblem:
    return RosterProblem(
        message=f"cannot read roster file {path}: {exc.strerror or exc}", unreadable=True
    )
