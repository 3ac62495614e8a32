"""Keyset pages of the merged fleet view, against a reference merge of everything.

Fast domain tests with peers as plain functions; the real fan-out over gRPC is
exercised by tests/fleet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mobkit.core.identity import AgentIdentity
from mobkit.core.types import IdentityLifecycleState, IdentityStatus, LeaseInfo
from mobkit.orchestrator.status_pages import PeerPage, StatusFilter, fleet_page, local_page

S = IdentityLifecycleState
LEASE = LeaseInfo(1, timedelta(seconds=5), True)


def status(identity: str, state: S, owner: str | None, team: str) -> IdentityStatus:
    return IdentityStatus(
        AgentIdentity(identity),
        state,
        labels={"team": team},
        lease=LEASE if owner else None,
        owner=owner,
    )


class World:
    """Identities spread over replicas 0..n-1; replica 0 serves the listing."""

    def __init__(self, hosts: dict[str, int], states: dict[str, S], roster0: set[str]) -> None:
        self.hosts, self.states, self.roster0 = hosts, states, roster0
        self.asked: list[tuple[str, int]] = []
        self.peers = len({h for h in hosts.values() if h != 0})

    def team(self, identity: str) -> str:
        return "even" if sum(map(ord, identity)) % 2 == 0 else "odd"

    def hosted(self, replica: int) -> list[IdentityStatus]:
        return [
            status(i, self.states[i], f"r{replica}", self.team(i))
            for i in sorted(self.hosts)
            if self.hosts[i] == replica
        ]

    def mine(self, identity: str) -> IdentityStatus:
        if self.hosts.get(identity) == 0:
            return status(identity, self.states[identity], "r0", self.team(identity))
        return status(identity, S.DORMANT, None, self.team(identity))

    async def ask(self, cursor: str, size: int) -> Sequence[PeerPage | BaseException]:
        self.asked.append((cursor, size))
        answers: list[PeerPage | BaseException] = []
        for replica in sorted({h for h in self.hosts.values() if h != 0}):
            page, more = local_page(
                [s.identity for s in self.hosted(replica)],
                {s.identity: s for s in self.hosted(replica)}.__getitem__,
                cursor,
                size,
                StatusFilter(),
            )
            answers.append((page, more))
        answers.append(ConnectionError("a replica going away"))
        return answers

    def reference(self, flt: StatusFilter) -> list[IdentityStatus]:
        merged = {i: self.mine(i) for i in self.roster0}
        for replica in {h for h in self.hosts.values() if h != 0}:
            for s in self.hosted(replica):
                merged[s.identity] = s
        return [merged[i] for i in sorted(merged) if flt.matches(merged[i])]

    async def listing(self, limit: int, flt: StatusFilter) -> list[IdentityStatus]:
        out: list[IdentityStatus] = []
        after = ""
        ids = sorted(self.roster0)
        while True:
            page, more = await fleet_page(ids, self.mine, self.ask, self.peers, after, limit, flt)
            assert len(page) <= limit
            out += page
            if not more:
                return out
            assert page, "a page that promises more must not be empty"
            after = page[-1].identity


worlds = st.dictionaries(
    st.text("abcdefgh", min_size=1, max_size=3),
    st.tuples(st.integers(-1, 3), st.sampled_from([S.ACTIVE, S.SUSPENDED, S.BROKEN])),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(
    world=worlds,
    limit=st.integers(1, 7),
    state=st.none() | st.sampled_from([S.ACTIVE, S.DORMANT, S.SUSPENDED]),
    team=st.none() | st.sampled_from(["even", "odd"]),
    missing=st.integers(0, 3),
)
def test_pages_concatenate_to_the_reference_merge(
    world: dict[str, tuple[int, S]], limit: int, state: S | None, team: str | None, missing: int
) -> None:
    hosts = {i: h for i, (h, _) in world.items() if h >= 0}
    states = {i: s for i, (_, s) in world.items()}
    # Replica 0's roster lacks a few identities a peer hosts (a roster change in flight).
    roster0 = {i for n, i in enumerate(sorted(world)) if n % 4 != missing or hosts.get(i, 0) == 0}
    w = World(hosts, states, roster0)
    flt = StatusFilter(state, {"team": team} if team else {})
    got = asyncio.run(w.listing(limit, flt))
    assert [s.identity for s in got] == [s.identity for s in w.reference(flt)]
    assert [(s.state, s.owner) for s in got] == [(s.state, s.owner) for s in w.reference(flt)]


def test_a_page_asks_peers_for_a_page_not_for_everything() -> None:
    ids = [f"i{n:04d}" for n in range(3000)]
    w = World({i: n % 3 for n, i in enumerate(ids)}, dict.fromkeys(ids, S.ACTIVE), set(ids))
    page, more = asyncio.run(fleet_page(ids, w.mine, w.ask, 2, "", 100, StatusFilter()))
    assert more and [s.identity for s in page] == ids[:100]
    assert {s.owner for s in page} == {"r0", "r1", "r2"}
    # Each peer is asked for a third of a page and some slack: one round.
    assert w.asked == [("", 51)]


def test_an_uneven_spread_takes_more_rounds_not_wrong_pages() -> None:
    ids = [f"i{n:04d}" for n in range(300)]
    w = World({i: 1 for i in ids}, dict.fromkeys(ids, S.ACTIVE), set(ids))  # one peer has all
    page, more = asyncio.run(fleet_page(ids, w.mine, w.ask, 1, "", 100, StatusFilter()))
    assert more and [s.identity for s in page] == ids[:100]
    assert {s.owner for s in page} == {"r1"}
    assert [size for _, size in w.asked] == [72, 72]


def test_local_page_builds_statuses_only_for_what_it_scans() -> None:
    built: list[str] = []

    def make(identity: str) -> IdentityStatus:
        built.append(identity)
        return status(identity, S.ACTIVE, "r0", "even")

    ids = [f"i{n:04d}" for n in range(1000)]
    page, more = local_page(ids, make, "i0500", 10, StatusFilter())
    assert [s.identity for s in page] == ids[501:511] and more
    assert built == ids[501:512]


def test_an_identity_retired_while_the_page_is_built_is_left_out() -> None:
    """The page awaits its peers; a roster edit may retire an identity meanwhile. It is
    left out of the page (it is gone), not an IDENTITY_NOT_FOUND for the whole call."""
    ids = [f"i{n:04d}" for n in range(10)]
    w = World(dict.fromkeys(ids, 0), dict.fromkeys(ids, S.ACTIVE), set(ids))
    retired = {"i0003"}

    async def ask(cursor: str, size: int) -> list[Any]:
        answers = await w.ask(cursor, size)
        retired.add("i0004")  # the roster changed while the peers answered
        return answers

    def mine(identity: str) -> IdentityStatus | None:
        return None if identity in retired else w.mine(identity)

    page, more = asyncio.run(fleet_page(ids, mine, ask, 1, "", 100, StatusFilter()))
    assert [s.identity for s in page] == [i for i in ids if i not in retired] and not more
    local, _ = local_page(ids, mine, "", 100, StatusFilter())
    assert [s.identity for s in local] == [i for i in ids if i not in retired]
