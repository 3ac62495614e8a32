"""The roster provider's port (CONTRACT-03) and its domain types. No gRPC here.

A roster provider serves *snapshots*: the last valid roster of its source, with
a monotonic revision and, when the source's latest version was rejected, the
problem that rejected it. A rejected version never replaces the roster, and no
snapshot ever holds part of one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from mobkit.core.errors import RosterInvalid
from mobkit.core.types import DurableAgentSpec, RosterContext


class RosterUnreadable(RosterInvalid):
    """The roster source could not be read at all (missing file, bad encoding).

    Same reason as a bad roster (ROSTER_INVALID) but FAILED_PRECONDITION: the
    request was fine, the source is not.
    """


@dataclass(frozen=True, slots=True)
class RosterProblem:
    """Why the source's latest version was rejected."""

    message: str
    entry: str | None = None
    field: str | None = None
    unreadable: bool = False
    reason: str = RosterInvalid.reason

    @classmethod
    def from_error(cls, exc: RosterInvalid) -> RosterProblem:
        return cls(
            message=exc.detail,
            entry=exc.entry,
            field=exc.field,
            unreadable=isinstance(exc, RosterUnreadable),
        )

    def to_error(self) -> RosterInvalid:
        kind = RosterUnreadable if self.unreadable else RosterInvalid
        return kind(self.message, entry=self.entry, field=self.field)


@dataclass(frozen=True, slots=True)
class RosterDocument:
    """A validated roster: the specs in source order and the declared profiles."""

    specs: tuple[DurableAgentSpec, ...] = ()
    profiles: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RosterSnapshot:
    """What a provider serves: the last valid roster, its revision, any pending problem."""

    specs: tuple[DurableAgentSpec, ...]
    revision: int
    profiles: Mapping[str, str] = field(default_factory=dict)
    problem: RosterProblem | None = None

    @property
    def identities(self) -> list[str]:
        return [s.identity for s in self.specs]

    def spec(self, identity: str) -> DurableAgentSpec | None:
        return next((s for s in self.specs if s.identity == identity), None)


@runtime_checkable
class RosterProvider(Protocol):
    """The desired set of durable identities (seed ``RosterProvider``), watchable."""

    async def roster(self, context: RosterContext) -> list[DurableAgentSpec]:
        """The seed's call: the current specs (raises ROSTER_INVALID if none is valid)."""
        ...

    async def get_roster(self, context: RosterContext) -> RosterSnapshot:
        """The current snapshot; ROSTER_INVALID when the source never held a valid roster."""
        ...

    def watch_roster(self, context: RosterContext) -> AsyncIterator[RosterSnapshot]:
        """The current snapshot, then one per change of the source (see the module doc)."""
        ...
