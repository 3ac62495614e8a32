"""The TOML file source: edits observed by polling, bad edits reported, revisions."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from mobkit.core.errors import RosterInvalid
from mobkit.roster.document import RosterRules
from mobkit.roster.domain import RosterSnapshot, RosterUnreadable
from mobkit.roster.file_source import FileRoster

WAIT = 10.0
HEAD = '[profiles]\nworker = "notebook"\n'


def team(*names: str) -> str:
    return HEAD + "".join(f'[[agents]]\nidentity = "{n}"\nprofile = "worker"\n' for n in names)


def write(path: Path, text: str, *, age_s: float = 0.0) -> int:
    """Write ``text``; with ``age_s`` the mtime is set that far in the past. Returns mtime_ns."""
    path.write_text(text)
    if age_s:
        mtime = time.time_ns() - int(age_s * 1e9)
        os.utime(path, ns=(mtime, mtime))
    return path.stat().st_mtime_ns


async def next_matching(
    stream: AsyncIterator[RosterSnapshot], check: Callable[[RosterSnapshot], bool]
) -> RosterSnapshot:
    async def scan() -> RosterSnapshot:
        async for snap in stream:
            if check(snap):
                return snap
        raise AssertionError("stream ended")

    return await asyncio.wait_for(scan(), WAIT)


@pytest.fixture
async def roster_file(tmp_path: Path) -> AsyncIterator[tuple[Path, FileRoster]]:
    path = tmp_path / "roster.toml"
    write(path, team("a", "b"), age_s=10)
    roster = await FileRoster(path, poll_interval=0.05).start()
    try:
        yield path, roster
    finally:
        await roster.close()


async def test_reads_the_file_with_its_mtime_as_revision(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    mtime = write(path, team("a", "b"), age_s=5)
    roster = await FileRoster(path, poll_interval=60).start()
    try:
        snap = await roster.get_roster()
        assert snap.identities == ["a", "b"] and snap.revision == mtime
        assert snap.profiles == {"worker": "notebook"}
    finally:
        await roster.close()


async def test_edit_is_observed_through_watch(roster_file: tuple[Path, FileRoster]) -> None:
    path, roster = roster_file
    stream = roster.watch_roster()
    first = await asyncio.wait_for(anext(stream), WAIT)
    assert first.identities == ["a", "b"]
    write(path, team("a", "b", "c"))
    second = await next_matching(stream, lambda s: s.identities == ["a", "b", "c"])
    assert second.revision > first.revision and second.problem is None
    await stream.aclose()


async def test_bad_edit_keeps_last_good_roster_and_reports_it(
    roster_file: tuple[Path, FileRoster],
) -> None:
    path, roster = roster_file
    stream = roster.watch_roster()
    good = await asyncio.wait_for(anext(stream), WAIT)
    write(path, team("a", "a"))  # duplicate identity
    reported = await next_matching(stream, lambda s: s.problem is not None)
    assert (reported.specs, reported.revision) == (good.specs, good.revision)
    assert reported.problem is not None
    assert (reported.problem.entry, reported.problem.field) == ("agents[1]", "identity")
    snap = await roster.get_roster()
    assert snap.specs == good.specs and snap.problem == reported.problem

    write(path, team("a", "b", "d"))
    fixed = await next_matching(stream, lambda s: s.problem is None)
    assert fixed.identities == ["a", "b", "d"] and fixed.revision > good.revision
    await stream.aclose()


async def test_a_reload_naming_no_agent_kind_is_rejected_with_every_problem(
    tmp_path: Path,
) -> None:
    path = tmp_path / "roster.toml"
    write(path, team("a", "b"), age_s=10)
    rules = RosterRules(agent_kinds=frozenset({"notebook", "echo"}))
    roster = await FileRoster(path, poll_interval=0.05, rules=rules).start()
    try:
        stream = roster.watch_roster()
        good = await asyncio.wait_for(anext(stream), WAIT)
        # A typo'd agent kind and a duplicate identity, in one edit.
        write(path, team("a", "a").replace(HEAD, HEAD + 'helper = "notebok"\n'))
        reported = await next_matching(stream, lambda s: s.problem is not None)
        assert (reported.specs, reported.revision) == (good.specs, good.revision)
        problem = reported.problem
        assert problem is not None
        assert (problem.entry, problem.field) == (None, "profiles.helper")  # the first
        assert problem.lines() == [
            "[profiles.helper]: unknown agent kind 'notebok' (the runtime offers: echo, notebook)",
            "[agents[1]] [identity]: duplicate identity 'a' (first used by agents[0])",
        ]
        assert "2 problems" in problem.message
        await stream.aclose()
    finally:
        await roster.close()


async def test_malformed_edit_never_serves_part_of_it(
    roster_file: tuple[Path, FileRoster],
) -> None:
    path, roster = roster_file
    stream = roster.watch_roster()
    good = await asyncio.wait_for(anext(stream), WAIT)
    write(path, team("a", "b", "c")[:-12])  # cut mid-entry: not TOML any more
    reported = await next_matching(stream, lambda s: s.problem is not None)
    assert reported.specs == good.specs
    assert reported.problem is not None and "malformed TOML" in reported.problem.message
    await stream.aclose()


async def test_deleted_file_is_reported_and_restoring_it_clears_the_problem(
    roster_file: tuple[Path, FileRoster],
) -> None:
    path, roster = roster_file
    stream = roster.watch_roster()
    good = await asyncio.wait_for(anext(stream), WAIT)
    text = path.read_text()
    path.unlink()
    gone = await next_matching(stream, lambda s: s.problem is not None)
    assert gone.problem is not None and gone.problem.unreadable
    assert gone.specs == good.specs
    write(path, text)
    back = await next_matching(stream, lambda s: s.problem is None)
    assert (back.specs, back.revision) == (good.specs, good.revision)
    await stream.aclose()


async def test_missing_file_at_start_is_unreadable_until_it_appears(tmp_path: Path) -> None:
    path = tmp_path / "later.toml"
    roster = await FileRoster(path, poll_interval=0.05).start()
    try:
        with pytest.raises(RosterUnreadable):
            await roster.get_roster()
        write(path, team("x"))

        async def valid() -> RosterSnapshot:
            while True:
                try:
                    return await roster.get_roster()
                except RosterInvalid:
                    await asyncio.sleep(0.05)

        snap = await asyncio.wait_for(valid(), WAIT)
        assert snap.identities == ["x"]
    finally:
        await roster.close()


async def test_fresh_content_is_accepted_only_once_settled(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    write(path, team("a"), age_s=10)
    roster = await FileRoster(path, poll_interval=60).start()  # no poll during the test
    try:
        before = roster.revision
        write(path, team("a", "b"))  # just written: may still be half-way through
        await roster.refresh()
        assert roster.snapshot().revision == before
        await roster.refresh()  # the same bytes one look later: settled
        snap = roster.snapshot()
        assert snap.identities == ["a", "b"] and snap.revision > before
    finally:
        await roster.close()


async def test_revision_does_not_go_back_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    write(path, team("a"), age_s=20)
    first = await FileRoster(path, poll_interval=60).start()
    await first.close()
    write(path, team("a", "b"), age_s=10)
    second = await FileRoster(path, poll_interval=60).start()
    await second.close()
    assert second.revision > first.revision


async def test_closing_the_provider_ends_watches(tmp_path: Path) -> None:
    from mobkit.core.errors import RosterUnavailable

    path = tmp_path / "r.toml"
    write(path, team("a"), age_s=10)
    roster = await FileRoster(path, poll_interval=60).start()
    stream = roster.watch_roster()
    await asyncio.wait_for(anext(stream), WAIT)
    pending = asyncio.ensure_future(anext(stream))
    await roster.close()
    with pytest.raises(RosterUnavailable):
        await asyncio.wait_for(pending, WAIT)
