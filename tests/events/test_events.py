"""The structural event log: cursors, pagination, watch, staleness, durability.

Contract tests run against both logs (``MemoryEventLog`` and ``EtcdEventLog`` on a
real etcd); failure tests (etcd restart, compaction) use a per-test etcd.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mobkit.core.errors import InvalidArgument, StaleEventCursor, StoreCorruption
from mobkit.core.types import MobStructuralEventEnvelope
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.process import EtcdProcess
from mobkit.events.domain import EventLog, NewEvent
from mobkit.events.etcd_backend import EtcdEventLog
from mobkit.events.etcd_codec import CURSOR_STRIDE, MAX_BATCH_EVENTS

WAIT = 20.0  # upper bound for anything that waits on a watch or on etcd


async def take(it: AsyncIterator[MobStructuralEventEnvelope], n: int) -> list[Any]:
    out: list[Any] = []
    async with asyncio.timeout(WAIT):
        async for env in it:
            out.append(env)
            if len(out) == n:
                break
    return out


def payloads(events: list[MobStructuralEventEnvelope]) -> list[Any]:
    return [(e.kind, e.agent_identity, e.data) for e in events]


async def read_all(log: EventLog, after_seq: int = 0, page_size: int = 7) -> list[Any]:
    out: list[Any] = []
    while True:
        page, latest = await log.list(after_seq, page_size)
        out.extend(page)
        if not page:
            assert after_seq == latest or not out
            return out
        after_seq = page[-1].cursor


# -- the contract, on both logs ----------------------------------------------------------


async def test_append_assigns_increasing_cursors_and_fields(make_log: Any) -> None:
    log = make_log()
    assert await log.latest_cursor() == 0
    assert await log.list(0, 10) == ([], 0)
    a = await log.append("activated", identity="planner", data={"session_id": "s1"})
    b = await log.append("edge_added", identity=None, data={"a": "x", "b": "y"})
    assert 0 < a.cursor < b.cursor
    assert (a.mob_id, a.kind, a.agent_identity, a.data) == (
        "mob",
        "activated",
        "planner",
        {"session_id": "s1"},
    )
    assert b.agent_identity is None
    assert a.event_id == f"mob-evt-{a.cursor}" != b.event_id
    assert a.timestamp_ms > 1_600_000_000_000
    assert await log.latest_cursor() == b.cursor
    listed, latest = await log.list(0, 10)
    assert listed == [a, b]
    assert latest == b.cursor


async def test_append_many_keeps_order_and_spans_batches(make_log: Any) -> None:
    log = make_log()
    n = MAX_BATCH_EVENTS * 2 + 3
    appended = await log.append_many([NewEvent("tick", f"id-{i}", {"i": i}) for i in range(n)])
    cursors = [e.cursor for e in appended]
    assert cursors == sorted(set(cursors))
    assert [e.data["i"] for e in appended] == list(range(n))
    assert await read_all(log, page_size=50) == appended
    assert await log.append_many([]) == []


async def test_list_pagination_is_exact_across_page_and_batch_boundaries(make_log: Any) -> None:
    log = make_log()
    appended = await log.append_many([NewEvent("e", None, {"i": i}) for i in range(10)])
    appended += [await log.append("e", identity=None, data={"i": 10 + i}) for i in range(5)]
    for page_size in (1, 3, 4, 15, 100):
        pages: list[list[Any]] = []
        after = 0
        while True:
            page, latest = await log.list(after, page_size)
            assert latest == appended[-1].cursor
            if not page:
                break
            assert len(page) == min(page_size, len(appended) - sum(map(len, pages)))
            pages.append(page)
            after = page[-1].cursor
        assert [e for p in pages for e in p] == appended, page_size
    # Any cursor between two events selects exactly the later ones.
    middle = appended[6].cursor
    assert (await log.list(middle, 100))[0] == appended[7:]
    assert (await log.list(middle - 1, 100))[0] == appended[6:]


async def test_cursor_beyond_the_frontier_is_stale_and_the_frontier_is_not(make_log: Any) -> None:
    log = make_log()
    last = await log.append("e", identity=None, data={})
    with pytest.raises(StaleEventCursor) as err:
        await log.list(last.cursor + 1, 10)
    assert err.value.metadata == {"after_seq": str(last.cursor + 1), "latest": str(last.cursor)}
    with pytest.raises(StaleEventCursor):
        await anext(aiter(log.watch(last.cursor + 1)))
    assert await log.list(last.cursor, 10) == ([], last.cursor)

    # after_seq == latest: only future events, whether the append lands before the
    # watch is in place (its catch-up) or after (its live tail).
    watch = log.watch(last.cursor)
    nxt = asyncio.ensure_future(take(watch, 1))
    future = await log.append("later", identity=None, data={})
    assert await nxt == [future]
    then = asyncio.ensure_future(take(watch, 1))
    later = await log.append("later", identity=None, data={})
    assert await then == [later]


async def test_stale_on_empty_log_and_bad_arguments(make_log: Any) -> None:
    log = make_log()
    with pytest.raises(StaleEventCursor):
        await log.list(1, 10)
    with pytest.raises(InvalidArgument):
        await log.list(-1, 10)
    with pytest.raises(InvalidArgument):
        await log.list(0, 0)
    with pytest.raises(InvalidArgument):
        await log.append("e", identity=None, data={"x": object()})
    assert await log.latest_cursor() == 0  # nothing was appended


async def test_watch_catches_up_then_tails_without_gaps_while_appends_race(
    make_log: Any,
) -> None:
    writers = [make_log(), make_log()]
    log = make_log()
    before = await log.append_many([NewEvent("early", None, {"i": i}) for i in range(5)])
    total = 5 + 2 * 60
    watched = asyncio.ensure_future(take(log.watch(0), total))

    async def write(w: int, log: EventLog) -> None:
        for i in range(20):
            await log.append("live", identity=f"w{w}", data={"i": i})
            await log.append_many([NewEvent("live", f"w{w}", {"i": i, "j": j}) for j in (1, 2)])

    await asyncio.gather(*(write(w, lg) for w, lg in enumerate(writers)))
    got = await watched
    everything = await read_all(log)
    assert got == everything
    assert got[:5] == before
    cursors = [e.cursor for e in got]
    assert cursors == sorted(set(cursors))
    # Each writer's own events arrive in the order it wrote them.
    for w in ("w0", "w1"):
        mine = [(e.data["i"], e.data.get("j", 0)) for e in got if e.agent_identity == w]
        assert mine == [(i, j) for i in range(20) for j in (0, 1, 2)]


async def test_watch_from_the_middle_starts_after_the_cursor(make_log: Any) -> None:
    log = make_log()
    appended = await log.append_many([NewEvent("e", None, {"i": i}) for i in range(6)])
    got = await take(log.watch(appended[2].cursor), 3)
    assert got == appended[3:]


async def test_trim_makes_older_cursors_stale(make_log: Any) -> None:
    log = make_log()
    first = await log.append_many([NewEvent("old", None, {"i": i}) for i in range(3)])
    second = await log.append_many([NewEvent("new", None, {"i": i}) for i in range(3)])
    assert await log.trim(0) == 0
    removed = await log.trim(first[-1].cursor)
    assert removed == 3
    assert (await log.list(0, 100))[0] == second
    for stale in (first[0].cursor, first[1].cursor):
        with pytest.raises(StaleEventCursor):
            await log.list(stale, 10)
        with pytest.raises(StaleEventCursor):
            await anext(aiter(log.watch(stale)))
    # A reader that saw everything trimmed loses nothing: its cursor is still valid.
    assert (await log.list(first[-1].cursor, 10))[0] == second
    assert await take(log.watch(first[-1].cursor), 3) == second
    assert await log.latest_cursor() == second[-1].cursor


# -- etcd specifics -----------------------------------------------------------------------


async def test_two_replicas_writing_concurrently_share_one_order(
    etcd_session: EtcdProcess, etcd_prefix: str
) -> None:
    clients = [await EtcdClient.connect([etcd_session.endpoint]) for _ in range(2)]
    try:
        logs = [EtcdEventLog(c, etcd_prefix, "mob") for c in clients]
        results: dict[int, list[Any]] = {0: [], 1: []}

        async def write(r: int) -> None:
            for i in range(25):
                if i % 5 == 0:
                    results[r] += await logs[r].append_many(
                        [NewEvent("b", f"r{r}", {"i": i, "j": j}) for j in range(3)]
                    )
                else:
                    results[r].append(await logs[r].append("s", identity=f"r{r}", data={"i": i}))

        await asyncio.gather(write(0), write(1))
        for r in (0, 1):
            own = [e.cursor for e in results[r]]
            assert own == sorted(set(own)), "a replica's own cursors increase"
        merged = sorted(results[0] + results[1], key=lambda e: e.cursor)
        assert len({e.cursor for e in merged}) == len(merged) == 2 * (20 + 5 * 3)
        # Both replicas read the same totally ordered log, equal to what was appended.
        assert await read_all(logs[0]) == merged
        assert await read_all(logs[1], page_size=4) == merged
        assert await logs[1].latest_cursor() == merged[-1].cursor
    finally:
        for c in clients:
            await c.close()


async def test_append_many_is_one_round_trip_per_batch(
    etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    log = EtcdEventLog(etcd_client, etcd_prefix, "mob")
    before = etcd_client.round_trips
    appended = await log.append_many([NewEvent("e", None, {"i": i}) for i in range(100)])
    assert etcd_client.round_trips - before == 1
    # One batch shares one etcd revision: cursors are revision * stride + index.
    revision = appended[0].cursor // CURSOR_STRIDE
    assert [e.cursor for e in appended] == [revision * CURSOR_STRIDE + i for i in range(100)]
    before = etcd_client.round_trips
    await log.append_many([NewEvent("e", None, {"i": i}) for i in range(MAX_BATCH_EVENTS + 1)])
    assert etcd_client.round_trips - before == 2


async def test_a_new_log_object_sees_old_events_and_continues_after_them(
    etcd_client: EtcdClient, etcd_prefix: str, etcd_session: EtcdProcess
) -> None:
    old = await EtcdEventLog(etcd_client, etcd_prefix, "mob").append_many(
        [NewEvent("e", "a", {"i": i}) for i in range(4)]
    )
    async with await EtcdClient.connect([etcd_session.endpoint]) as other:
        fresh = EtcdEventLog(other, etcd_prefix, "mob")
        assert await fresh.latest_cursor() == old[-1].cursor
        assert await read_all(fresh) == old
        new = await fresh.append("e", identity="a", data={"i": 4})
        assert new.cursor > old[-1].cursor
        assert await take(fresh.watch(0), 5) == [*old, new]


async def test_corrupt_batch_is_store_corruption(etcd_client: EtcdClient, etcd_prefix: str) -> None:
    log = EtcdEventLog(etcd_client, etcd_prefix, "mob")
    await log.append("e", identity=None, data={})
    await etcd_client.put(f"{etcd_prefix}events/zz/bad", b"{not json")
    with pytest.raises(StoreCorruption):
        await log.list(0, 10)


async def test_watch_survives_an_etcd_restart_without_gaps_or_duplicates(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await EtcdClient.connect([etcd.endpoint], timeout=2.0) as client:
        log = EtcdEventLog(client, etcd_prefix, "mob")
        before = await log.append_many([NewEvent("before", None, {"i": i}) for i in range(5)])
        watch = log.watch(0)
        assert await take(watch, 5) == before

        await etcd.restart_async(graceful=False)
        during = [await log.append("after", identity=None, data={"i": i}) for i in range(5)]
        more = await log.append_many([NewEvent("after", None, {"i": 5 + i}) for i in range(3)])
        got = await take(watch, 8)
        assert got == [*during, *more]

        # A second restart while the watch is idle: the tail continues.
        await etcd.restart_async(graceful=True)
        last = await log.append("last", identity=None, data={})
        assert await take(watch, 1) == [last]
        assert await read_all(log) == [*before, *during, *more, last]
        await watch.aclose()


async def test_etcd_compaction_loses_no_event_for_a_watch(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await EtcdClient.connect([etcd.endpoint]) as client:
        log = EtcdEventLog(client, etcd_prefix, "mob")
        appended = await log.append_many([NewEvent("e", None, {"i": i}) for i in range(3)])
        for i in range(4):
            appended.append(await log.append("e", identity=None, data={"i": 3 + i}))
        # Unrelated writes, then compact etcd's history past every event.
        for i in range(5):
            await client.put(f"{etcd_prefix}other/{i}", b"x")
        revision = (await client.put(f"{etcd_prefix}other/x", b"x")).header.revision
        await client.compact(revision, physical=True)

        # The events themselves are still listed and watched from any cursor in order.
        assert await read_all(log) == appended
        watch = log.watch(appended[1].cursor)
        assert await take(watch, 5) == appended[2:]
        live = await log.append("live", identity=None, data={})
        assert await take(watch, 1) == [live]
        await watch.aclose()
