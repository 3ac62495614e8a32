"""Domain errors. Each declares the ``ErrorInfo`` reason of ``API.md``, its gRPC code
(by name: this module stays free of gRPC) and how it is rebuilt from the metadata it
sends (``from_metadata``); ``@REGISTRY.shared`` makes every client decode it
(:mod:`mobkit.core.error_registry`). ``metadata`` holds every dynamic value of the
message as strings, as AIP-193 asks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, Self

from mobkit.core.bounds import echo
from mobkit.core.error_registry import REGISTRY, StatusName

DOMAIN = "mobkit.dev"
"""ErrorInfo domain of every MobKit reason (AIP-193)."""

Metadata = Mapping[str, str]


class MobKitError(Exception):
    """Base of every error MobKit reports to callers."""

    reason: ClassVar[str] = "INTERNAL"
    # The code a servicer answers with unless its table says otherwise; a variant
    # subclass inherits it with the reason.
    grpc_code: ClassVar[StatusName] = "INTERNAL"
    # A client may overwrite it on an instance built from another domain's error.
    domain: str = DOMAIN

    def __init__(self, message: str, **metadata: object) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = {k: str(v) for k, v in metadata.items() if v is not None}

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        """Rebuild from a received ErrorInfo (a missing key raises ``KeyError``). A class
        whose constructor takes other arguments overrides this, so that renaming one is
        a type error here rather than a silent change of what the wire decodes."""
        return cls(message)


def _opt_int(value: str | None) -> int | None:
    return None if value is None else int(value)


# -- input ------------------------------------------------------------------


@REGISTRY.shared
class InvalidIdentity(MobKitError, ValueError):
    reason = "INVALID_IDENTITY"
    grpc_code = "INVALID_ARGUMENT"

    def __init__(self, identity: str, detail: str) -> None:
        super().__init__(
            f"invalid identity {echo(identity)}: {detail}", identity=identity, detail=detail
        )
        self.identity = identity
        self.detail = detail

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["identity"], metadata["detail"])


@REGISTRY.shared
class InvalidArgument(MobKitError, ValueError):
    reason = "INVALID_ARGUMENT"
    grpc_code = "INVALID_ARGUMENT"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"invalid {field}: {detail}", field=field, detail=detail)
        self.field = field
        self.detail = detail

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["field"], metadata["detail"])


@REGISTRY.shared
class BackendUnavailable(MobKitError):
    """etcd, SQLite or a provider service cannot be reached."""

    reason = "BACKEND_UNAVAILABLE"
    grpc_code = "UNAVAILABLE"

    def __init__(self, backend: str, detail: str) -> None:
        super().__init__(f"{backend} unavailable: {detail}", backend=backend, detail=detail)
        self.backend = backend
        self.detail = detail

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(backend=metadata["backend"], detail=metadata["detail"])


@REGISTRY.shared
class BackendFull(MobKitError):
    """etcd's space quota is exhausted (its NOSPACE alarm) or SQLite's disk is full
    (``SQLITE_FULL``): writes fail until an operator frees space (README, "When etcd
    is full"). Not a ``BackendUnavailable``: retrying soon does not help, and callers
    that wait out an outage should not hide it."""

    reason = "BACKEND_FULL"
    grpc_code = "RESOURCE_EXHAUSTED"

    def __init__(self, detail: str, *, backend: str) -> None:
        super().__init__(f"{backend} is out of space: {detail}", backend=backend, detail=detail)
        self.backend = backend
        self.detail = detail

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["detail"], backend=metadata["backend"])


@REGISTRY.shared
class Unauthenticated(MobKitError):
    reason = "UNAUTHENTICATED"
    grpc_code = "UNAUTHENTICATED"


@REGISTRY.shared
class PermissionDenied(MobKitError):
    reason = "PERMISSION_DENIED"
    grpc_code = "PERMISSION_DENIED"


# -- continuity store (seed ContinuityStoreError) ----------------------------


class ContinuityStoreError(MobKitError):
    """Base of the continuity store's errors."""


@REGISTRY.shared
class StaleFencingToken(ContinuityStoreError):
    """A higher fencing token has written this identity: the caller is not the owner."""

    reason = "STALE_FENCING_TOKEN"
    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, identity: str, presented: int, current: int) -> None:
        super().__init__(
            f"stale fencing token for {identity}: presented {presented}, current {current}",
            identity=identity,
            presented=presented,
            current=current,
        )
        self.identity, self.presented, self.current = identity, presented, current

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["identity"], int(metadata["presented"]), int(metadata["current"]))


@REGISTRY.shared
class StaleCheckpointVersion(ContinuityStoreError):
    reason = "STALE_CHECKPOINT_VERSION"
    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, identity: str, presented: int, current: int) -> None:
        super().__init__(
            f"stale checkpoint version for {identity}: presented {presented}, current {current}",
            identity=identity,
            presented=presented,
            current=current,
        )
        self.identity, self.presented, self.current = identity, presented, current

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["identity"], int(metadata["presented"]), int(metadata["current"]))


@REGISTRY.shared
class GenerationMismatch(ContinuityStoreError):
    reason = "GENERATION_MISMATCH"
    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, identity: str, presented: int, current: int) -> None:
        super().__init__(
            f"generation mismatch for {identity}: presented {presented}, record has {current}",
            identity=identity,
            presented=presented,
            current=current,
        )
        self.identity, self.presented, self.current = identity, presented, current

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["identity"], int(metadata["presented"]), int(metadata["current"]))


@REGISTRY.shared
class ContinuityRecordNotFound(ContinuityStoreError):
    reason = "CONTINUITY_RECORD_NOT_FOUND"
    grpc_code = "NOT_FOUND"

    def __init__(self, identity: str) -> None:
        super().__init__(f"continuity record not found for {identity}", identity=identity)
        self.identity = identity

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["identity"])


@REGISTRY.shared
class StoreCorruption(ContinuityStoreError):
    reason = "STORE_CORRUPTION"
    grpc_code = "DATA_LOSS"

    def __init__(self, detail: str, identity: str | None = None) -> None:
        super().__init__(f"continuity store corruption: {detail}", identity=identity, detail=detail)
        self.detail = detail
        self.identity = identity

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["detail"], identity=metadata.get("identity"))


@REGISTRY.shared
class SnapshotTooLarge(ContinuityStoreError):
    reason = "SNAPSHOT_TOO_LARGE"
    grpc_code = "RESOURCE_EXHAUSTED"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"snapshot of {size} bytes exceeds the limit of {limit}", size=size, limit=limit
        )
        self.size, self.limit = size, limit

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(int(metadata["size"]), int(metadata["limit"]))


class StoreUnavailable(ContinuityStoreError, BackendUnavailable):
    def __init__(self, detail: str, backend: str = "continuity store") -> None:
        BackendUnavailable.__init__(self, backend, detail)


CONTINUITY_ERRORS: tuple[type[ContinuityStoreError], ...] = (
    StaleFencingToken,
    StaleCheckpointVersion,
    GenerationMismatch,
    ContinuityRecordNotFound,
    StoreCorruption,
    SnapshotTooLarge,
)
"""What a continuity store refuses a write or read with: every service that calls one
(the store's, the orchestrator's) reports them."""


# -- lease (seed LeaseError) ---------------------------------------------------


class LeaseError(MobKitError):
    """Base of the lease provider's errors."""


class LeaseProviderUnavailable(LeaseError, BackendUnavailable):
    def __init__(self, detail: str, backend: str = "lease provider") -> None:
        BackendUnavailable.__init__(self, backend, detail)


# -- roster, topology, customizer -------------------------------------------------


class RosterError(MobKitError):
    """Base of the roster provider's errors."""


@REGISTRY.shared
class RosterInvalid(RosterError):
    """A roster with one problem, or several (:meth:`several`): ``problems`` lists each
    with its own entry and field; ``entry`` / ``field`` are the first one's."""

    reason = "ROSTER_INVALID"
    grpc_code: ClassVar[StatusName] = "INVALID_ARGUMENT"  # RosterUnreadable has another

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

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["detail"], entry=metadata.get("entry"), field=metadata.get("field"))


def roster_location(entry: str | None, field: str | None) -> str:
    return "".join(f" [{p}]" for p in (entry, field) if p)


class RosterUnavailable(RosterError, BackendUnavailable):
    def __init__(self, detail: str, backend: str = "roster source") -> None:
        BackendUnavailable.__init__(self, backend, detail)


class TopologyError(MobKitError):
    """Base of the topology provider's errors."""


@REGISTRY.shared
class SelfEdge(TopologyError, ValueError):
    reason = "SELF_EDGE"
    grpc_code = "INVALID_ARGUMENT"

    def __init__(self, identity: str) -> None:
        super().__init__(f"self-edges are not allowed: {identity} -> {identity}", identity=identity)
        self.identity = identity

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["identity"])


class TopologyUnavailable(TopologyError, BackendUnavailable):
    def __init__(self, detail: str, backend: str = "topology provider") -> None:
        BackendUnavailable.__init__(self, backend, detail)


class CustomizerError(MobKitError):
    """Base of the agent customizer's errors."""


@REGISTRY.shared
class CustomizerFailed(CustomizerError):
    reason = "CUSTOMIZER_FAILED"
    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, detail: str, identity: str | None = None) -> None:
        super().__init__(f"customizer build failed: {detail}", identity=identity, detail=detail)
        self.detail, self.identity = detail, identity

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["detail"], identity=metadata.get("identity"))


class CustomizerUnavailable(CustomizerError, BackendUnavailable):
    def __init__(self, detail: str, backend: str = "customizer") -> None:
        BackendUnavailable.__init__(self, backend, detail)


# -- orchestration (seed MobError, the parts exposed through the API) -------------


class MobError(MobKitError):
    """Base of the orchestrator's errors."""


@REGISTRY.shared
class IdentityNotFound(MobError):
    reason = "IDENTITY_NOT_FOUND"
    grpc_code = "NOT_FOUND"

    def __init__(self, identity: str) -> None:
        super().__init__(f"identity {identity!r} is not in the roster", identity=identity)
        self.identity = identity

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["identity"])


@REGISTRY.shared
class NotAddressable(MobError):
    reason = "NOT_ADDRESSABLE"
    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, identity: str) -> None:
        super().__init__(
            f"agent {identity!r} is internal-only: use Dispatch, not Send", identity=identity
        )
        self.identity = identity

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["identity"])


@REGISTRY.shared
class NotActive(MobError):
    reason = "NOT_ACTIVE"
    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, identity: str, state: str, retry_after_ms: int | None = None) -> None:
        super().__init__(
            f"identity {identity!r} is not active (state {state})",
            identity=identity,
            state=state,
            retry_after_ms=retry_after_ms,
        )
        self.identity, self.state, self.retry_after_ms = identity, state, retry_after_ms

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(
            metadata["identity"],
            metadata["state"],
            retry_after_ms=_opt_int(metadata.get("retry_after_ms")),
        )


@REGISTRY.shared
class InvalidTransition(MobError):
    reason = "INVALID_TRANSITION"
    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, identity: str, from_state: str, to_state: str) -> None:
        super().__init__(
            f"invalid transition for {identity!r}: {from_state} -> {to_state}",
            identity=identity,
            **{"from": from_state, "to": to_state},
        )
        self.identity, self.from_state, self.to_state = identity, from_state, to_state

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["identity"], metadata["from"], metadata["to"])


@REGISTRY.shared
class StaleEventCursor(MobError):
    reason = "STALE_EVENT_CURSOR"
    grpc_code = "OUT_OF_RANGE"

    def __init__(self, after_seq: int, latest: int) -> None:
        super().__init__(
            f"stale event cursor: requested {after_seq}, latest {latest}",
            after_seq=after_seq,
            latest=latest,
        )
        self.after_seq, self.latest = after_seq, latest

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(int(metadata["after_seq"]), int(metadata["latest"]))


@REGISTRY.shared
class TopologyViolation(MobError):
    reason = "TOPOLOGY_VIOLATION"
    grpc_code = "PERMISSION_DENIED"

    def __init__(self, from_identity: str, to_identity: str) -> None:
        super().__init__(
            f"{from_identity!r} has no managed peer edge to {to_identity!r}",
            **{"from": from_identity, "to": to_identity},
        )
        self.from_identity, self.to_identity = from_identity, to_identity

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["from"], metadata["to"])
