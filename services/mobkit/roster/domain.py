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
from mobkit.flows.definition import FlowDefinition


class RosterUnreadable(RosterInvalid):
    """The roster source could not be read at all (missing file, bad encoding).

    Same reason as a bad roster (ROSTER_INVALID) but FAILED_PRECONDITION: the
    request was fine, the source is not.
    """

    grpc_code = "FAILED_PRECONDITION"


@dataclass(frozen=True, slots=True)
class RosterProblem:
    """Why the source's latest version was rejected. A version with several problems
    lists each in ``problems`` (entry, field and message of the first above, and a
    message naming them all)."""

    message: str
    entry: str | None = None
    field: str | None = None
    unreadable: bool = False
    reason: str = RosterInvalid.reason
    problems: tuple[RosterProblem, ...] = ()

    @classmethod
    def from_error(cls, exc: RosterInvalid) -> RosterProblem:
        several = exc.problems if len(exc.problems) > 1 else ()
        return cls(
            message=exc.detail,
            entry=exc.entry,
            field=exc.field,
            unreadable=isinstance(exc, RosterUnreadable),
            problems=tuple(cls.from_error(p) for p in several),
        )

    def to_error(self) -> RosterInvalid:
        if self.problems:
            return RosterInvalid.several([p.to_error() for p in self.problems])
        kind = RosterUnreadable if self.unreadable else RosterInvalid
        return kind(self.message, entry=self.entry, field=self.field)

    def lines(self) -> list[str]:
        """One line per problem, each with its location (``[agents[2]] [profile]: ...``)."""
        return [p.located for p in self.to_error().problems]


@dataclass(frozen=True, slots=True)
class RosterDocument:
    """A validated roster: the specs in source order and the declared profiles."""

    specs: tuple[DurableAgentSpec, ...] = ()
    profiles: Mapping[str, str] = field(default_factory=dict)
    flows: tuple[FlowDefinition, ...] = ()


@dataclass(frozen=True, slots=True)
class RosterSnapshot:
    """What a provider serves: the last valid roster, its revision, any pending problem."""

    specs: tuple[DurableAgentSpec, ...]
    revision: int
    profiles: Mapping[str, str] = field(default_factory=dict)
    problem: RosterProblem | None = None
    flows: tuple[FlowDefinition, ...] = ()

    @property
    def identities(self) -> list[str]:
        return [s.identity for s in self.specs]

    def spec(self, identity: str) -> DurableAgentSpec | None:
        return next((s for s in self.specs if s.identity == identity), None)

    def flow(self, flow_id: str) -> FlowDefinition | None:
        return next((f for f in self.flows if f.flow_id == flow_id), None)


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
