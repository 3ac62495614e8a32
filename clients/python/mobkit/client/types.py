"""Result types the domain package has no dataclass for: pages and reconcile reports.

Everything else a client returns is a domain dataclass from :mod:`mobkit.core.types`
(``IdentityStatus``, ``DispatchReceipt``, ``MobStructuralEventEnvelope``, ...) or a
provider's domain module (``mobkit.lease.domain.Lease``, ``mobkit.topology.domain.EdgePage``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from mobkit.core.types import ManagedPeerEdge, MobStructuralEventEnvelope
from mobkit.roster.domain import RosterProblem

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BackendCondition:
    """A backend of the answering replica refuses writes: ``reason`` is the error
    they fail with (``BACKEND_FULL``: etcd's NOSPACE alarm, SQLite's disk full)."""

    backend: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a ``List*`` call; ``next_page_token`` is empty on the last page.
    A page of statuses also carries the answering replica's ``backend_conditions``,
    and its ``roster_problem`` when the roster's latest version was rejected."""

    items: tuple[T, ...]
    next_page_token: str = ""
    backend_conditions: tuple[BackendCondition, ...] = ()
    roster_problem: RosterProblem | None = None


@dataclass(frozen=True, slots=True)
class EventPage:
    """One page of ``ListEvents``; ``latest_cursor`` is the log's frontier at the call."""

    events: tuple[MobStructuralEventEnvelope, ...]
    next_page_token: str
    latest_cursor: int


@dataclass(frozen=True, slots=True)
class ReconcileFailure:
    """An identity a reconcile cycle could not bring to its desired state."""

    identity: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """What one reconcile cycle changed on the replica that ran it; ``roster_problem``
    is set when the roster's latest version was rejected (the cycle then reconciled
    towards the last valid one, ``roster_revision``)."""

    roster_revision: int
    activated: tuple[str, ...] = ()
    retired: tuple[str, ...] = ()
    respawned: tuple[str, ...] = ()
    failed: tuple[ReconcileFailure, ...] = ()
    edges_added: tuple[ManagedPeerEdge, ...] = ()
    edges_removed: tuple[ManagedPeerEdge, ...] = ()
    roster_problem: RosterProblem | None = None
