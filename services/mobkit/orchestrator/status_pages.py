"""Pages of identity statuses across the fleet, by keyset (identities after a cursor).

Every replica knows the whole roster but only the live status of what it hosts,
and the owner's view wins. A page asks each peer for its hosted statuses from
the same cursor, a bounded number each, so one page costs O(page size) on every
replica, instead of each page materialising the statuses of the whole fleet.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from mobkit.core.types import IdentityLifecycleState, IdentityStatus

# A peer's answer: its hosted statuses after the cursor, in identity order, and
# whether it stopped short (more after the last one).
PeerPage = tuple[list[IdentityStatus], bool]
AskPeers = Callable[[str, int], Awaitable[Sequence[PeerPage | BaseException]]]


@dataclass(frozen=True)
class StatusFilter:
    """The ListIdentityStatuses filter: the state, and every selector label."""

    state: IdentityLifecycleState | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def matches(self, status: IdentityStatus) -> bool:
        if self.state is not None and status.state is not self.state:
            return False
        return not self.labels or all(status.labels.get(k) == v for k, v in self.labels.items())


def local_page(
    ids: Sequence[str],
    status: Callable[[str], IdentityStatus | None],
    after: str,
    limit: int,
    flt: StatusFilter,
) -> tuple[list[IdentityStatus], bool]:
    """Up to ``limit`` matching statuses of the sorted ``ids`` after ``after``, and
    whether more follow. Statuses are built only for the identities scanned; one that
    left the roster meanwhile (``status`` answers None) is skipped."""
    out: list[IdentityStatus] = []
    for identity in ids[bisect_right(ids, after) :]:
        candidate = status(identity)
        if candidate is not None and flt.matches(candidate):
            if len(out) == limit:
                return out, True
            out.append(candidate)
    return out, False


async def fleet_page(
    ids: Sequence[str],
    status: Callable[[str], IdentityStatus | None],
    ask_peers: AskPeers,
    peers: int,
    after: str,
    limit: int,
    flt: StatusFilter,
) -> tuple[list[IdentityStatus], bool]:
    """One page of the merged fleet view, from this replica and ``peers`` others.

    ``ids`` is this replica's sorted roster and ``status`` its own view of one of
    them (None once it left the roster: the page is built across awaits, while a
    roster edit may retire identities). Peers answer unfiltered, so an identity a peer hosts is never mistaken
    for one nobody hosts. Past the point where some peer stopped short, the
    merged view is unknown: the page stops there and, if it is not full yet, asks
    again from that point. Each peer is asked for about its share of a page, with
    some slack: ownership is spread evenly, so one round is the rule.
    """
    share = min(limit + 1, math.ceil((limit + 1) * 1.25 / (peers + 1)) + 8)
    known = set(ids)
    out: list[IdentityStatus] = []
    cursor = after
    while True:
        answers = await ask_peers(cursor, share)
        remote: dict[str, IdentityStatus] = {}
        bound: str | None = None  # nothing is known about identities after this one
        for answer in answers:
            if isinstance(answer, BaseException):
                continue  # a replica going away: its identities show as not hosted
            statuses, truncated = answer
            for s in statuses:
                if s.lease is not None:
                    remote.setdefault(s.identity, s)
            if truncated and statuses:
                last = statuses[-1].identity
                bound = last if bound is None else min(bound, last)
        stop = len(ids) if bound is None else bisect_right(ids, bound)
        # A peer may host an identity this replica's roster does not have yet.
        extra = sorted(i for i in remote if i not in known and (bound is None or i <= bound))
        for identity in heapq.merge(ids[bisect_right(ids, cursor) : stop], extra):
            theirs = remote.get(identity)
            mine = status(identity) if identity in known else None
            if mine is not None:
                merged = theirs if theirs is not None and mine.lease is None else mine
            elif theirs is not None:
                merged = theirs
            else:
                continue  # retired while this page was built
            if flt.matches(merged):
                if len(out) == limit:
                    return out, True
                out.append(merged)
        if bound is None:
            return out, False
        cursor = bound
