"""Snapshot and watch semantics shared by every source, on the in-memory roster."""

from __future__ import annotations

import asyncio

import pytest

from mobkit.core.errors import RosterInvalid
from mobkit.core.types import DurableAgentSpec, RosterContext
from mobkit.roster.domain import RosterDocument, RosterProblem, RosterProvider, RosterSnapshot
from mobkit.roster.memory import MemoryRoster
from mobkit.roster.state import RosterState

WAIT = 5.0


def spec(identity: str, profile: str = "worker", **labels: str) -> DurableAgentSpec:
    return DurableAgentSpec(identity=identity, profile=profile, labels=labels)  # type: ignore[arg-type]


async def test_memory_roster_serves_the_port() -> None:
    roster = MemoryRoster([spec("a"), spec("b")])
    assert isinstance(roster, RosterProvider)
    snap = await roster.get_roster(RosterContext())
    assert snap.identities == ["a", "b"] and snap.problem is None
    assert snap.profiles == {"worker": "worker"}
    assert [s.identity for s in await roster.roster(RosterContext())] == ["a", "b"]


async def test_revision_grows_with_each_new_roster_only() -> None:
    roster = MemoryRoster([spec("a")])
    first = roster.revision
    assert roster.set([spec("a"), spec("b")]) > first
    second = roster.revision
    assert roster.set([spec("a"), spec("b")]) == second  # same roster: same revision


async def test_bad_roster_keeps_the_last_valid_one_and_reports_why() -> None:
    roster = MemoryRoster([spec("a")])
    good = roster.snapshot()
    with pytest.raises(RosterInvalid) as info:
        roster.set([spec("b"), spec("b")])
    assert info.value.field == "identity"
    snap = await roster.get_roster()
    assert snap.specs == good.specs and snap.revision == good.revision
    assert snap.problem == RosterProblem(info.value.detail, "agents[1]", "identity")
    roster.set([spec("b")])
    fixed = await roster.get_roster()
    assert fixed.problem is None and fixed.identities == ["b"] and fixed.revision > good.revision


async def test_returning_to_the_valid_roster_clears_the_problem_at_the_same_revision() -> None:
    state = RosterState("test")
    doc = RosterDocument((spec("a"),), {"worker": "notebook"})
    state.accept(doc, 10)
    state.reject(RosterProblem("broken"))
    assert state.snapshot().problem is not None
    state.accept(doc, 11)
    assert state.snapshot() == RosterSnapshot(doc.specs, 10, {"worker": "notebook"})


async def test_revision_never_goes_back_even_if_the_source_says_so() -> None:
    state = RosterState("test")
    state.accept(RosterDocument((spec("a"),)), 100)
    state.accept(RosterDocument((spec("b"),)), 7)
    assert state.revision == 101


async def test_no_valid_roster_ever_is_roster_invalid() -> None:
    state = RosterState("test")
    state.reject(RosterProblem("bad profile", entry="agents[0]", field="profile"))
    with pytest.raises(RosterInvalid) as info:
        await state.get_roster()
    assert (info.value.entry, info.value.field) == ("agents[0]", "profile")
    with pytest.raises(RosterInvalid):
        await anext(state.watch_roster())


async def test_watch_sends_current_then_each_change_then_problems() -> None:
    roster = MemoryRoster([spec("a")])
    stream = roster.watch_roster()
    first = await asyncio.wait_for(anext(stream), WAIT)
    assert first.identities == ["a"]
    nxt = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    assert not nxt.done()  # nothing changed yet
    roster.set([spec("a"), spec("c")])
    second = await asyncio.wait_for(nxt, WAIT)
    assert second.identities == ["a", "c"] and second.revision > first.revision
    with pytest.raises(RosterInvalid):
        roster.set([spec("a", profile="ghost")], profiles={"worker": "x"})
    third = await asyncio.wait_for(anext(stream), WAIT)
    assert third.problem is not None and third.problem.field == "profile"
    assert (third.specs, third.revision) == (second.specs, second.revision)
    await stream.aclose()


async def test_watchers_get_the_latest_roster_not_every_intermediate_one() -> None:
    roster = MemoryRoster([spec("a")])
    stream = roster.watch_roster()
    await anext(stream)
    for name in ("b", "c", "d"):
        roster.set([spec(name)])
    latest = await asyncio.wait_for(anext(stream), WAIT)
    assert latest.identities == ["d"]
    await stream.aclose()


async def test_failed_source_ends_watches() -> None:
    from mobkit.core.errors import RosterUnavailable

    roster = MemoryRoster([spec("a")])
    stream = roster.watch_roster()
    await anext(stream)
    roster.fail(RosterUnavailable("gone"))
    with pytest.raises(RosterUnavailable):
        await asyncio.wait_for(anext(stream), WAIT)
