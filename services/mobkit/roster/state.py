"""The watchable state every roster source feeds: last valid roster, pending problem.

Sources call :meth:`RosterState.accept` with each valid version they read and
:meth:`RosterState.reject` with each problem. The state implements the port:
snapshots, and watches that wake on every change. Watchers get the latest
snapshot, not every intermediate one: each message is a complete roster, so
skipping a superseded version loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from mobkit.core.errors import MobKitError, RosterUnavailable
from mobkit.core.types import DurableAgentSpec, RosterContext
from mobkit.roster.domain import RosterDocument, RosterProblem, RosterSnapshot

log = logging.getLogger("mobkit.roster")


class RosterState:
    """Port implementation over whatever a source last read (see module doc)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._good: RosterSnapshot | None = None
        self._problem: RosterProblem | None = None
        self._failure: MobKitError | None = None
        self._seq = 0
        self._changed = asyncio.Event()

    # -- fed by sources ----------------------------------------------------------------

    def accept(self, document: RosterDocument, revision: int) -> bool:
        """Make ``document`` current. ``revision`` is the source's; it is raised if needed
        so that a new roster always gets a strictly larger revision. Returns whether
        anything changed for watchers."""
        good = self._good
        if (
            good is not None
            and good.specs == document.specs
            and good.profiles == document.profiles
            and good.flows == document.flows
        ):
            if self._problem is None:
                return False
            # The source went back to the valid roster it had: same content, same revision.
            revision = good.revision
        elif good is not None:
            revision = max(revision, good.revision + 1)
        self._good = RosterSnapshot(
            document.specs, revision, dict(document.profiles), flows=document.flows
        )
        self._problem = None
        log.info(
            "roster from %s at revision %d: %d specs", self.source, revision, len(document.specs)
        )
        self._notify()
        return True

    def reject(self, problem: RosterProblem) -> bool:
        """Report a rejected version; the last valid roster stays current."""
        if problem == self._problem:
            return False
        self._problem = problem
        log.warning(
            "roster from %s rejected, keeping the last valid one: %s",
            self.source,
            problem.to_error().message,
        )
        self._notify()
        return True

    def fail(self, error: MobKitError) -> None:
        """The source is lost for good: watches end with ``error``."""
        self._failure = error
        self._notify()

    def _notify(self) -> None:
        self._seq += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # -- the port --------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._good.revision if self._good is not None else 0

    def snapshot(self) -> RosterSnapshot:
        """The current snapshot; the problem as an error when no roster was ever valid."""
        if self._failure is not None:
            raise self._failure
        if self._good is None:
            if self._problem is not None:
                raise self._problem.to_error()
            raise RosterUnavailable("the roster source has not been read yet", self.source)
        if self._problem is None:
            return self._good
        g = self._good
        return RosterSnapshot(g.specs, g.revision, g.profiles, self._problem, g.flows)

    async def refresh(self) -> None:
        """Re-read the source now if it can be (read-your-writes for callers)."""

    async def get_roster(self, context: RosterContext | None = None) -> RosterSnapshot:
        await self.refresh()
        return self.snapshot()

    async def roster(self, context: RosterContext | None = None) -> list[DurableAgentSpec]:
        return list((await self.get_roster(context)).specs)

    async def watch_roster(
        self, context: RosterContext | None = None
    ) -> AsyncIterator[RosterSnapshot]:
        await self.refresh()
        while True:
            seq, changed = self._seq, self._changed
            yield self.snapshot()
            if self._seq == seq:
                await changed.wait()
