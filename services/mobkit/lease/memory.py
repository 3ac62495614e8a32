"""In-memory lease provider with the etcd backend's semantics, for fast tests.

Like the etcd backend, every (runtime instance, ttl) pair shares one session whose
expiry covers all identities it holds: renewing any of them, or acquiring more,
keeps them all alive. Tokens come from one revision counter bumped once per
acquire call that creates keys, as an etcd transaction would. Expiry is evaluated
lazily against an injectable clock, so tests can move time by hand.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from mobkit.core.identity import AgentIdentity, FencingToken, parse_identities
from mobkit.core.types import (
    Acquired,
    AlreadyHeld,
    LeaseAcquireResult,
    LeaseGrant,
    LeaseRenewResult,
    Lost,
    Renewed,
)
from mobkit.lease.domain import (
    Lease,
    check_asker,
    check_grants,
    check_page_size,
    check_runtime_instance,
    check_ttl,
    decode_page_token,
    encode_page_token,
)


@dataclass(eq=False)
class _Session:
    holder: str
    ttl: timedelta
    expires_at: float
    identities: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Key:
    holder: str
    token: FencingToken
    session: _Session


class MemoryLeaseProvider:
    """:class:`~mobkit.lease.domain.LeaseProvider` held in this process's memory."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, expiry_check: float = 0.1
    ) -> None:
        self._clock = clock
        self._revision = itertools.count(1)
        self._keys: dict[str, _Key] = {}
        self._sessions: dict[tuple[str, timedelta], _Session] = {}
        self._watchers: list[Callable[[str], None]] = []
        self._expiry_check = expiry_check  # s between a watch's looks at the clock

    def _released(self, identity: str) -> None:
        for notify in list(self._watchers):
            notify(identity)

    def _now(self) -> float:
        """The clock's time, after dropping every session that has expired by then."""
        now = self._clock()
        for key, session in list(self._sessions.items()):
            if session.expires_at <= now:
                del self._sessions[key]
                for identity in session.identities:
                    del self._keys[identity]
                    self._released(identity)
        return now

    async def acquire_leases(
        self, identities: Sequence[str], runtime_instance: str, ttl: timedelta
    ) -> list[LeaseAcquireResult]:
        ids = parse_identities(identities)
        holder = check_runtime_instance(runtime_instance)
        check_ttl(ttl)
        if not ids:
            return []
        now = self._now()
        session = self._sessions.get((holder, ttl))
        if session is None:
            session = self._sessions[(holder, ttl)] = _Session(holder, ttl, now)
        session.expires_at = now + ttl.total_seconds()
        revision: int | None = None
        results: list[LeaseAcquireResult] = []
        for identity in ids:
            key = self._keys.get(identity)
            if key is None:
                revision = revision or next(self._revision)
                key = self._keys[identity] = _Key(holder, FencingToken(revision), session)
                session.identities.add(identity)
            if key.holder == holder:
                results.append(Acquired(LeaseGrant(identity, key.token, key.session.ttl)))
            else:
                results.append(AlreadyHeld(identity, key.holder))
        return results

    async def renew_leases(
        self, grants: Sequence[LeaseGrant], runtime_instance: str | None = None
    ) -> list[LeaseRenewResult]:
        grants = check_grants(grants)
        asker = check_asker(runtime_instance)
        now = self._now()
        results: list[LeaseRenewResult] = []
        for grant in grants:
            key = self._keys.get(grant.identity)
            if key is None or not _current(key, grant, asker):
                results.append(Lost(grant.identity))
                continue
            key.session.expires_at = now + key.session.ttl.total_seconds()
            results.append(Renewed(LeaseGrant(grant.identity, key.token, key.session.ttl)))
        return results

    async def release_leases(
        self, grants: Sequence[LeaseGrant], runtime_instance: str | None = None
    ) -> None:
        grants = check_grants(grants)
        asker = check_asker(runtime_instance)
        self._now()
        for grant in grants:
            key = self._keys.get(grant.identity)
            if key is None or not _current(key, grant, asker):
                continue  # already lost, released, or someone else's
            del self._keys[grant.identity]
            key.session.identities.discard(grant.identity)
            self._released(grant.identity)
            if not key.session.identities:  # holds nothing: end the session
                self._sessions.pop((key.session.holder, key.session.ttl), None)

    async def list_leases(
        self, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Lease], str]:
        size = check_page_size(page_size)
        after = decode_page_token(page_token)
        now = self._now()
        names = sorted(i for i in self._keys if after is None or i > after)
        page = [
            Lease(
                AgentIdentity(identity),
                key.holder,
                key.token,
                timedelta(seconds=max(key.session.expires_at - now, 0.0)),
            )
            for identity in names[:size]
            for key in (self._keys[identity],)
        ]
        more = len(names) > size
        return page, encode_page_token(page[-1].identity) if more else ""

    async def holder_of(self, identity: str) -> str | None:
        self._now()
        key = self._keys.get(identity)
        return key.holder if key is not None else None

    async def holders(self) -> dict[str, str]:
        self._now()
        return {identity: key.holder for identity, key in self._keys.items()}

    async def watch_releases(self, notify: Callable[[str], None]) -> None:
        """Releases as they happen; expiries when a look at the clock (at least every
        ``expiry_check`` seconds while watching) finds them."""
        self._watchers.append(notify)
        try:
            while True:
                self._now()
                await asyncio.sleep(self._expiry_check)
        finally:
            self._watchers.remove(notify)


def _current(key: _Key, grant: LeaseGrant, asker: str | None) -> bool:
    """Whether ``grant`` is the identity's current lease (and ``asker``'s, if named)."""
    return key.token == grant.fencing_token and (asker is None or key.holder == asker)
