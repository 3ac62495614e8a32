"""The one list of MobKit's error reasons (googleapis ``api_core.exceptions`` keeps its
classes the same way): each error class declares its ``reason``, its ``grpc_code`` and
``from_metadata``; registering it here is what makes the wire decode it.

Servicer tables (:func:`mobkit.server.errors.service_errors`), the wire decoder
(:func:`mobkit.wire.errors.error_from_rpc`) and the Python client's exports all read
this registry. No gRPC here: codes are ``grpc.StatusCode`` names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypeVar, get_args

if TYPE_CHECKING:
    from mobkit.core.errors import MobKitError

StatusName = Literal[
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
]
"""A ``grpc.StatusCode`` name (every code but OK): mypy catches a misspelt code."""

E = TypeVar("E", bound="type[MobKitError]")


class ErrorRegistry:
    """Error classes by reason, one class per reason.

    *Shared* reasons are decoded by every client (``mobkit.core.errors``); a
    *specific* one belongs to one service (``runtime/domain.py``, ``modules/domain.py``)
    and is decoded only by the clients that ask for it, as its subclass variants are
    (``LeaseProviderUnavailable`` for ``BACKEND_UNAVAILABLE``).
    """

    def __init__(self) -> None:
        self._shared: dict[str, type[MobKitError]] = {}
        self._specific: dict[str, type[MobKitError]] = {}

    def shared(self, cls: E) -> E:
        """Class decorator: a reason every client decodes."""
        self._add(self._shared, cls)
        return cls

    def specific(self, cls: E) -> E:
        """Class decorator: a service's own reason, decoded where its client passes it."""
        self._add(self._specific, cls)
        return cls

    def _add(self, into: dict[str, type[MobKitError]], cls: type[MobKitError]) -> None:
        # A variant (a subclass keeping its parent's reason) is not registered: the
        # reason already names its parent.
        reason = cls.__dict__.get("reason")
        if not isinstance(reason, str):
            raise TypeError(f"{cls.__name__} declares no reason of its own")
        if reason in self._shared or reason in self._specific:
            raise TypeError(f"reason {reason} is already {self.lookup(reason)!r}")
        if cls.grpc_code not in get_args(StatusName):
            raise TypeError(f"{cls.__name__}.grpc_code {cls.grpc_code!r} is not a gRPC status name")
        into[reason] = cls

    def lookup(self, reason: str) -> type[MobKitError] | None:
        return self._shared.get(reason) or self._specific.get(reason)

    def shared_classes(self) -> tuple[type[MobKitError], ...]:
        return tuple(self._shared.values())

    def classes(self) -> tuple[type[MobKitError], ...]:
        """Every registered class, shared ones first."""
        return (*self._shared.values(), *self._specific.values())

    def decoder(self, *specific: type[MobKitError]) -> dict[str, type[MobKitError]]:
        """Reason -> class for one client: the shared reasons, then ``specific`` (which
        win for their reason)."""
        return {**self._shared, **{cls.reason: cls for cls in specific}}


REGISTRY = ErrorRegistry()
