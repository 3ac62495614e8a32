"""Domain errors. Each carries the ``ErrorInfo`` reason of ``API.md``.

The gRPC status code lives in each service's error table (servicer layer), so
this module stays free of gRPC. ``metadata`` holds every dynamic value of the
message as strings, as AIP-193 asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from mobkit.core.bounds import echo


class MobKitError(Exception):
    """Base of every error MobKit reports to callers."""

    reason: ClassVar[str] = "INTERNAL"
    # ErrorInfo domain of every MobKit reason (AIP-193); a client may overwrite it on
    # an instance built from another domain's error.
    domain: str = "mobkit.dev"

    def __init__(self, message: str, **metadata: object) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = {k: str(v) for k, v in metadata.items() if v is not None}


# -- input ------------------------------------------------------------------


class InvalidIdentity(MobKitError, ValueError):
    reason = "INVALID_IDENTITY"

    def __init__(self, identity: str, detail: str) -> None:
        super().__init__(
            f"invalid identity {echo(identity)}: {detail}", identity=identity, detail=detail
        )
        self.identity = identity
        self.detail = detail


class InvalidArgument(MobKitError, ValueError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"invalid {field}: {detail}", field=field, detail=detail)
        self.field = field
        self.detail = detail


class BackendUnavailable(MobKitError):
    """etcd, SQLite or a provider service cannot be reached."""

    reason = "BACKEND_UNAVAILABLE"

    def __init__(self, backend: str, detail: str) -> None:
        super().__init__(f"{backend} unavailable: {detail}", backend=backend, detail=detail)
        self.backend = backend
        self.detail = detail


class BackendFull(MobKitError):
    """etcd's space quota is exhausted (its NOSPACE alarm) or SQLite's disk is full
    (``SQLITE_FULL``): writes fail until an operator frees space (README, "When etcd
    is full"). Not a ``BackendUnavailable``: retrying soon does not help, and callers
    that wait out an outage should not hide it."""

    reason = "BACKEND_FULL"

    def __init__(self, detail: str, *, backend: str) -> None:
        super().__init__(f"{backend} is out of space: {detail}", backend=backend, detail=detail)
        self.backend = backend
        self.detail = detail


class Unauthenticated(MobKitError):
    reason = "UNAUTHENTICATED"


class PermissionDenied(MobKitError):
    reason = "PERMISSION_DENIED"


# -- continuity store (seed ContinuityStoreError) ----------------------------


class ContinuityStoreError(MobKitError):
    """Base of the continuity store's errors."""


class StaleFencingToken(ContinuityStoreError):
    """A higher fencing token has written this identity: the caller is not the owner."""

    reason = "STALE_FENCING_TOKEN"

    def __init__(self, identity: str, presented: int, current: int) -> None:
        super().__init__(
            f"stale fencing token for {identity}: presented {presented}, current {current}",
            identity=identity,
            presented=presented,
            current=current,
        )
        self.identity, self.presented, self.current = identity, presented, current


class StaleCheckpointVersion(ContinuityStoreError):
    reason = "STALE_CHECKPOINT_VERSION"

    def __init__(self, identity: str, presented: int, current: int) -> None:
        super().__init__(
            f"stale checkpoint version for {identity}: presented {presented}, current {current}",
            identity=identity,
            presented=presented,
            current=current,
        )
        self.identity, self.presented, self.current = identity, presented, current


class GenerationMismatch(ContinuityStoreError):
    reason = "GENERATION_MISMATCH"

    def __init__(self, identity: str, presented: int, current: int) -> None:
        super().__init__(
            f"generation mismatch for {identity}: presented {presented}, record has {current}",
            identity=identity,
            presented=presented,
            current=current,
        )
        self.identity, self.presented, self.current = identity, presented, current


class ContinuityRecordNotFound(ContinuityStoreError):
    reason = "CONTINUITY_RECORD_NOT_FOUND"

    def __init__(self, identity: str) -> None:
        super().__init__(f"continuity record not found for {identity}", identity=identity)
        self.identity = identity


class StoreCorruption(ContinuityStoreError):
    reason = "STORE_CORRUPTION"

    def __init__(self, detail: str, identity: str | None = None) -> None:
        super().__init__(f"continuity store corruption: {detail}", identity=identity, detail=detail)
        self.detail = detail
        self.identity = identity


class SnapshotTooLarge(ContinuityStoreError):
    reason = "SNAPSHOT_TOO_LARGE"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"snapshot of {size} bytes exceeds the limit of {limit}", size=size, limit=limit
        )
        self.size, self.limit = size, limit


class StoreUnavailable(ContinuityStoreError, BackendUnavailable):
    def __init__(self, detail: str, backend: str = "continuity store") -> None:
        BackendUnavailable.__init__(self, backend, detail)


# -- lease (seed LeaseError) ---------------------------------------------------


class LeaseError(MobKitError):
    """Base of the lease provider's errors."""


class LeaseProviderUnavailable(LeaseError, BackendUnavailable):
    def __init__(self, detail: str, backend: str = "lease provider") -> None:
        BackendUnavailable.__init__(self, backend, detail)


# -- roster, topology, customizer -------------------------------------------------


class RosterError(MobKitError):
    """Base of the roster provider's errors."""


class RosterInvalid(RosterError):
    """A roster with one problem, or several (:meth:`several`): ``problems`` lists each
    with its own entry and field; ``entry`` / ``field`` are the first one's."""

    reason = "ROSTER_INVALID"

    def __init__(
        self,
        detail: str,
        *,
        entry: str | None = None,
        field: str | None = None,
        count: int | None = None,
    ) -> None:
        super().__init__(
            f"roster invalid{roster_location(entry, field)}: {detail}",
            entry=entry,
            field=field,
            detail=detail,
            problems=count,
        )
        self.detail, self.entry, self.field = detail, entry, field
        self._several: tuple[RosterInvalid, ...] = ()

    @property
    def problems(self) -> tuple[RosterInvalid, ...]:
        """Each problem on its own (this error alone when it has one)."""
        return self._several or (self,)

    @property
    def located(self) -> str:
        """``[agents[2]] [profile]: unknown profile ...``: where, then what."""
        where = roster_location(self.entry, self.field).lstrip()
        return f"{where}: {self.detail}" if where else self.detail

    @classmethod
    def several(cls, problems: Sequence[RosterInvalid]) -> RosterInvalid:
        """One error for every problem of a roster (a single one is returned as is)."""
        if len(problems) == 1:
            return problems[0]
        listed = "; ".join(p.located for p in problems)
        combined = cls(f"{len(problems)} problems: {listed}", count=len(problems))
        # An editor jumps to the first problem; the message names every one.
        first = problems[0]
        combined.entry, combined.field = first.entry, first.field
        combined.metadata.update({k: v for k in ("entry", "field") if (v := getattr(first, k))})
        combined._several = tuple(problems)
        return combined


def roster_location(entry: str | None, field: str | None) -> str:
    return "".join(f" [{p}]" for p in (entry, field) if p)


class RosterUnavailable(RosterError, BackendUnavailable):
    def __init__(self, detail: str, backend: str = "roster source") -> None:
        BackendUnavailable.__init__(self, backend, detail)


class TopologyError(MobKitError):
    """Base of the topology provider's errors."""


class SelfEdge(TopologyError, ValueError):
    reason = "SELF_EDGE"

    def __init__(self, identity: str) -> None:
        super().__init__(f"self-edges are not allowed: {identity} -> {identity}", identity=identity)
        self.identity = identity


class TopologyUnavailable(TopologyError, BackendUnavailable):
    def __init__(self, detail: str, backend: str = "topology provider") -> None:
        BackendUnavailable.__init__(self, backend, detail)


class CustomizerError(MobKitError):
    """Base of the agent customizer's errors."""


class CustomizerFailed(CustomizerError):
    reason = "CUSTOMIZER_FAILED"

    def __init__(self, detail: str, identity: str | None = None) -> None:
        super().__init__(f"customizer build failed: {detail}", identity=identity, detail=detail)
        self.detail, self.identity = detail, identity


class CustomizerUnavailable(CustomizerError, BackendUnavailable):
    def __init__(self, detail: str, backend: str = "customizer") -> None:
        BackendUnavailable.__init__(self, backend, detail)


# -- orchestration (seed MobError, the parts exposed through the API) -------------


class MobError(MobKitError):
    """Base of the orchestrator's errors."""


class IdentityNotFound(MobError):
    reason = "IDENTITY_NOT_FOUND"

    def __init__(self, identity: str) -> None:
        super().__init__(f"identity {identity!r} is not in the roster", identity=identity)
        self.identity = identity


class NotAddressable(MobError):
    reason = "NOT_ADDRESSABLE"

    def __init__(self, identity: str) -> None:
        super().__init__(
            f"agent {identity!r} is internal-only: use Dispatch, not Send", identity=identity
        )
        self.identity = identity


class NotActive(MobError):
    reason = "NOT_ACTIVE"

    def __init__(self, identity: str, state: str, retry_after_ms: int | None = None) -> None:
        super().__init__(
            f"identity {identity!r} is not active (state {state})",
            identity=identity,
            state=state,
            retry_after_ms=retry_after_ms,
        )
        self.identity, self.state, self.retry_after_ms = identity, state, retry_after_ms


class InvalidTransition(MobError):
    reason = "INVALID_TRANSITION"

    def __init__(self, identity: str, from_state: str, to_state: str) -> None:
        super().__init__(
            f"invalid transition for {identity!r}: {from_state} -> {to_state}",
            identity=identity,
            **{"from": from_state, "to": to_state},
        )
        self.identity, self.from_state, self.to_state = identity, from_state, to_state


class StaleEventCursor(MobError):
    reason = "STALE_EVENT_CURSOR"

    def __init__(self, after_seq: int, latest: int) -> None:
        super().__init__(
            f"stale event cursor: requested {after_seq}, latest {latest}",
            after_seq=after_seq,
            latest=latest,
        )
        self.after_seq, self.latest = after_seq, latest


class TopologyViolation(MobError):
    reason = "TOPOLOGY_VIOLATION"

    def __init__(self, from_identity: str, to_identity: str) -> None:
        super().__init__(
            f"{from_identity!r} has no managed peer edge to {to_identity!r}",
            **{"from": from_identity, "to": to_identity},
        )
        self.from_identity, self.to_identity = from_identity, to_identity
