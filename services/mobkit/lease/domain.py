"""The lease provider port (CONTRACT-02) and the rules every backend shares.

A lease says which runtime instance may act on an identity right now. Each grant
carries a fencing token that is strictly larger for every new holder of the
identity, so a store remembering the highest token it has seen can refuse a
previous holder's writes. No gRPC here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, runtime_checkable

from mobkit.core import page_token
from mobkit.core.errors import InvalidArgument
from mobkit.core.identity import (
    AgentIdentity,
    FencingToken,
    parse_identities,
    parse_runtime_instance,
)
from mobkit.core.types import LeaseAcquireResult, LeaseGrant, LeaseRenewResult

# Same bounds as ``Settings.lease_ttl`` (``--lease-ttl``).
MIN_TTL = timedelta(seconds=0.5)
MAX_TTL = timedelta(hours=1)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

_PAGE_TOKEN_PREFIX = "lease-after:"
_NOT_OURS = "not a token returned by ListLeases"


@dataclass(frozen=True, slots=True)
class Lease:
    """One currently held lease, for operators (``ListLeases``)."""

    identity: AgentIdentity
    holder: str
    fencing_token: FencingToken
    ttl_remaining: timedelta


@runtime_checkable
class LeaseOwnership(Protocol):
    """Who owns what, answered by the lease provider, the only one that knows: callers
    never read lease keys themselves."""

    async def holder_of(self, identity: str) -> str | None:
        """The holder of ``identity``'s lease now, or None while it is vacant."""
        ...

    async def holders(self) -> dict[str, str]:
        """Every identity held now, with its holder, as of one consistent read (an
        identity missing from it is vacant)."""
        ...

    async def watch_releases(self, notify: Callable[[str], None]) -> None:
        """Until cancelled, call ``notify(identity)`` soon after an identity's lease
        goes away (released, or expired with its holder): the moment it may be claimed,
        and the moment a remembered owner stops being one. Best effort: a release may
        go unreported (history lost to compaction, a backend that can only poll), so
        callers still poll; an outage ends the watch with the provider's error."""
        ...


@runtime_checkable
class LeaseProvider(LeaseOwnership, Protocol):
    """Live ownership of identities with monotonic fencing tokens.

    Implementations: :class:`~mobkit.lease.memory.MemoryLeaseProvider`,
    :class:`~mobkit.lease.etcd_backend.EtcdLeaseProvider` and the gRPC client adapter
    :class:`~mobkit.lease.client.GrpcLeaseProvider`. Batch calls return one result per
    input, in input order; invalid input raises before any state changes.
    """

    async def acquire_leases(
        self, identities: Sequence[str], runtime_instance: str, ttl: timedelta
    ) -> list[LeaseAcquireResult]:
        """``Acquired`` or ``AlreadyHeld`` per identity. An identity this very
        ``runtime_instance`` already holds comes back ``Acquired`` with its current grant."""
        ...

    async def renew_leases(
        self, grants: Sequence[LeaseGrant], runtime_instance: str | None = None
    ) -> list[LeaseRenewResult]:
        """``Renewed`` while the identity still has the grant's token, else ``Lost``.
        With ``runtime_instance``, a grant another instance holds is ``Lost`` too."""
        ...

    async def release_leases(
        self, grants: Sequence[LeaseGrant], runtime_instance: str | None = None
    ) -> None:
        """Give up grants that are still current; stale ones are a no-op, and so, with
        ``runtime_instance``, are grants another instance holds."""
        ...

    async def list_leases(
        self, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Lease], str]:
        """Held leases ordered by identity, and the next page's token (``""`` at the end)."""
        ...


async def holders_from_pages(provider: LeaseProvider) -> dict[str, str]:
    """:meth:`LeaseOwnership.holders` from ``list_leases`` pages, for a provider that
    has no cheaper way (the gRPC client: ``ListLeases`` is its only read). Pages are
    keyset pages, so an identity appears at most once even if leases change meanwhile."""
    held: dict[str, str] = {}
    token = ""
    while True:
        page, token = await provider.list_leases(MAX_PAGE_SIZE, token)
        held.update((lease.identity, lease.holder) for lease in page)
        if not token:
            return held


# -- validation shared by the backends ------------------------------------------------


def check_ttl(ttl: timedelta) -> timedelta:
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise InvalidArgument(
            "ttl",
            f"{ttl.total_seconds()}s is outside [{MIN_TTL.total_seconds()}s, "
            f"{MAX_TTL.total_seconds()}s]",
        )
    return ttl


def check_runtime_instance(runtime_instance: str) -> str:
    return parse_runtime_instance(runtime_instance)


def check_asker(runtime_instance: str | None) -> str | None:
    """The instance a renew or release speaks for; None: holder-less (token only)."""
    return parse_runtime_instance(runtime_instance) if runtime_instance else None


def check_grants(grants: Sequence[LeaseGrant]) -> list[LeaseGrant]:
    """Valid identities, none repeated, positive tokens (etcd revisions start at 1)."""
    parse_identities((g.identity for g in grants), field="grants")
    for g in grants:
        if g.fencing_token <= 0:
            raise InvalidArgument("fencing_token", f"must be positive for {g.identity!r}")
    return list(grants)


def check_page_size(page_size: int) -> int:
    """0 means the default; values above the maximum are coerced to it (AIP-158)."""
    return page_token.page_size(page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(last_identity: str) -> str:
    """An opaque token resuming a listing after ``last_identity``."""
    return page_token.encode(_PAGE_TOKEN_PREFIX + last_identity)


def decode_page_token(token: str) -> str | None:
    """The identity a listing resumes after, or None for the first page."""
    if not token:
        return None
    payload = page_token.decode(token, _NOT_OURS)
    if not payload.startswith(_PAGE_TOKEN_PREFIX):
        raise InvalidArgument("page_token", _NOT_OURS)
    return payload[len(_PAGE_TOKEN_PREFIX) :]
