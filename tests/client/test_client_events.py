"""The event iterator resumes from its cursor across a server restart: no gap, no duplicate."""

from __future__ import annotations

import asyncio

import pytest
from client_support import TEAM

from mobkit.client import AsyncMobKit, BackendUnavailable, MobKit
from mobkit.core.types import MobStructuralEventEnvelope
from mobkit.testing.processes import ServeProcess


async def read_through(stream: object, seen: list[MobStructuralEventEnvelope], cursor: int) -> None:
    """Append events from ``stream`` until one at or past ``cursor``."""
    async with asyncio.timeout(30):
        while not seen or seen[-1].cursor < cursor:
            seen.append(await anext(stream))  # type: ignore[call-overload]


async def activations_after(mk: AsyncMobKit, cursor: int) -> int:
    """Wait until every identity has been activated again after ``cursor``; the frontier."""
    async with asyncio.timeout(30):
        while True:
            page = await mk.list_events_page(cursor, page_size=1000)
            again = {e.agent_identity for e in page.events if e.kind == "activated"}
            if again >= set(TEAM):
                return page.latest_cursor
            await asyncio.sleep(0.1)


async def test_event_stream_resumes_after_a_restart_without_gaps_or_duplicates(
    own_suite: ServeProcess,
) -> None:
    notices: list[tuple[int, BaseException | None]] = []
    async with AsyncMobKit(own_suite.address) as mk:
        first_frontier = (await mk.list_events_page(0, page_size=1)).latest_cursor
        seen: list[MobStructuralEventEnvelope] = []
        async with mk.events(0, on_reconnect=lambda c, e: notices.append((c, e))) as stream:
            await read_through(stream, seen, first_frontier)
            cursor_before_restart = stream.cursor

            own_suite.kill()
            await asyncio.to_thread(own_suite.start)
            # The restarted suite takes its identities back: new events, written while
            # the stream was down or reconnecting.
            second_frontier = await activations_after(mk, first_frontier)
            await read_through(stream, seen, second_frontier)
            assert stream.reconnects >= 1

        log = [e async for e in mk.list_events(0)]
    expected = [e for e in log if e.cursor <= seen[-1].cursor]
    assert [e.event_id for e in seen] == [e.event_id for e in expected]  # no gap, no duplicate
    assert seen == expected
    assert second_frontier > first_frontier
    assert notices and notices[0][0] == cursor_before_restart  # resumed from its cursor


def test_sync_event_stream_gives_up_after_its_reconnect_timeout(own_suite: ServeProcess) -> None:
    with MobKit(own_suite.address) as mk:
        stream = mk.events(0, reconnect_timeout=0.5)
        first = next(stream)
        own_suite.kill()
        with pytest.raises(BackendUnavailable):
            for _ in range(10_000):  # drains the catch-up, then fails to reconnect
                next(stream)
        assert stream.cursor >= first.cursor
