"""Event retention: the window by age and by count, the floor, concurrent trimmers,
and the served orchestrator trimming its own log (real etcd throughout)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from mobkit.core.errors import StaleEventCursor
from mobkit.core.types import MobStructuralEventEnvelope
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.process import EtcdProcess
from mobkit.events.domain import EventLog, NewEvent
from mobkit.events.etcd_backend import EtcdEventLog
from mobkit.events.etcd_codec import CURSOR_STRIDE
from mobkit.events.retention import EventTrimmer, Retention
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.testing.servers import running_services
from mobkit.testing.suite import reason, send_request, stub, until, write_roster

pytestmark = pytest.mark.timeout(120)

Envelope = MobStructuralEventEnvelope


async def batch_keys(client: EtcdClient, prefix: str) -> int:
    reply = await client.range(
        f"{prefix.rstrip('/')}/events/", f"{prefix.rstrip('/')}/events0", count_only=True
    )
    return int(reply.count)


async def batch_revisions(client: EtcdClient, prefix: str) -> list[int]:
    """The etcd revision of every batch key still under ``<prefix>/events/``."""
    base = f"{prefix.rstrip('/')}/events/"
    return [int(kv.mod_revision) async for kv in client.range_prefix(base, keys_only=True)]


async def read_all(log: EventLog, after_seq: int = 0, page_size: int = 50) -> list[Envelope]:
    out: list[Envelope] = []
    while True:
        page, _ = await log.list(after_seq, page_size)
        if not page:
            return out
        out.extend(page)
        after_seq = page[-1].cursor


async def take(log: EventLog, after_seq: int, n: int) -> list[Envelope]:
    out: list[Envelope] = []
    watch = log.watch(after_seq)
    try:
        async with asyncio.timeout(20):
            async for env in watch:
                out.append(env)
                if len(out) == n:
                    break
    finally:
        await watch.aclose()
    return out


async def stale(log: EventLog, after_seq: int) -> None:
    with pytest.raises(StaleEventCursor):
        await log.list(after_seq, 10)
    with pytest.raises(StaleEventCursor):
        await anext(aiter(log.watch(after_seq)))


async def one_by_one(log: EventLog, n: int, tag: str = "e") -> list[Envelope]:
    return [await log.append(tag, identity=None, data={"i": i}) for i in range(n)]


# -- the window, on both logs --------------------------------------------------------------


async def test_count_window_keeps_the_newest_events(make_log: Any) -> None:
    log = make_log()
    appended = await one_by_one(log, 10)
    assert (await log.retain(max_age=None, max_count=20)).batches == 0  # inside the window
    report = await log.retain(max_age=None, max_count=4)
    assert (report.batches, report.events, report.floor) == (6, 6, appended[5].cursor)
    assert not report.more
    # ListEvents and WatchEvents from 0 start at the floor; a cursor below it is stale.
    assert await read_all(log) == appended[6:]
    assert await take(log, 0, 4) == appended[6:]
    for cursor in (appended[0].cursor, appended[4].cursor):
        await stale(log, cursor)
    assert await read_all(log, appended[5].cursor) == appended[6:]  # the floor itself is valid
    assert await log.latest_cursor() == appended[-1].cursor
    assert (await log.retain(max_age=None, max_count=4)).batches == 0  # idempotent


async def test_age_window_drops_what_is_older(make_log: Any) -> None:
    log = make_log()
    old = await one_by_one(log, 3, "old")
    await asyncio.sleep(0.3)  # two clock readings apart, then a cut between them
    new = await one_by_one(log, 3, "new")
    assert new[0].timestamp_ms - old[-1].timestamp_ms >= 200
    now = new[0].timestamp_ms + 60_000
    cutoff_age = (now - (old[-1].timestamp_ms + new[0].timestamp_ms) // 2) / 1000
    report = await log.retain(max_age=cutoff_age, max_count=None, now_ms=now)
    assert (report.events, report.floor) == (3, old[-1].cursor)
    assert await read_all(log) == new
    await stale(log, old[0].cursor)
    # Both bounds: the stricter one wins.
    report = await log.retain(max_age=cutoff_age, max_count=1, now_ms=now)
    assert report.events == 2
    assert await read_all(log) == new[2:]


async def test_a_pass_is_bounded_and_says_there_is_more(make_log: Any) -> None:
    log = make_log()
    appended = await one_by_one(log, 9)
    first = await log.retain(max_age=None, max_count=1, max_batches=5)
    assert (first.batches, first.more, first.floor) == (5, True, appended[4].cursor)
    assert await read_all(log) == appended[5:]
    second = await log.retain(max_age=None, max_count=1, max_batches=5)
    assert (second.batches, second.more) == (3, False)
    assert await read_all(log) == appended[8:]


# -- etcd: keys, batches, the floor ----------------------------------------------------------


async def test_trimmed_batches_are_gone_from_etcd_and_batches_go_whole(
    etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    log = EtcdEventLog(etcd_client, etcd_prefix, "mob")
    batches = [
        await log.append_many([NewEvent("b", None, {"batch": b, "i": i}) for i in range(3)])
        for b in range(200)  # more than one delete txn holds (64)
    ]
    assert await batch_keys(etcd_client, etcd_prefix) == 200
    # 4 events are 2 whole batches: at least the window is kept.
    report = await log.retain(max_age=None, max_count=4)
    assert (report.batches, report.events) == (198, 594)
    assert report.floor == batches[197][-1].cursor
    assert await batch_keys(etcd_client, etcd_prefix) == 2
    assert await read_all(log) == batches[198] + batches[199]
    await stale(log, batches[100][1].cursor)


async def test_keys_of_the_old_format_and_corrupt_batches_are_trimmed_too(
    etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    log = EtcdEventLog(etcd_client, etcd_prefix, "mob")
    # A batch written before key names carried their size (value read instead).
    legacy = b'{"v":1,"events":[{"mob_id":"mob","timestamp_ms":1,"kind":"old","data":{}}]}'
    await etcd_client.put(f"{etcd_prefix}events/old-writer/00000000000000000001-1-abc", legacy)
    await etcd_client.put(f"{etcd_prefix}events/zz/bad", b"{not json")
    kept = await one_by_one(log, 2)
    report = await log.retain(max_age=3600, max_count=None)
    assert report.batches == 2  # both are older than any window
    assert await read_all(log) == kept


async def test_list_from_zero_starts_at_the_floor_while_a_trim_is_still_deleting(
    etcd_client: EtcdClient, etcd_prefix: str, etcd_session: EtcdProcess
) -> None:
    writer = EtcdEventLog(etcd_client, etcd_prefix, "mob")
    appended = await one_by_one(writer, 130)
    # A trimmer that raised the floor and died before it deleted anything.
    await writer._raise_floor(appended[119].cursor)
    async with await EtcdClient.connect([etcd_session.endpoint]) as other:
        reader = EtcdEventLog(other, etcd_prefix, "mob")  # has never seen the floor
        page, latest = await reader.list(0, 5)
        assert page == appended[120:125] and latest == appended[-1].cursor
        assert await take(reader, 0, 10) == appended[120:]
        await stale(reader, appended[50].cursor)
    # The next pass deletes what the dead one left (and nothing in the window).
    report = await writer.retain(max_age=None, max_count=1000)
    assert report.batches == 120 and report.floor == appended[119].cursor
    assert await batch_keys(etcd_client, etcd_prefix) == 10
    assert await read_all(writer) == appended[120:]


async def test_two_trimmers_at_once_never_lose_an_event_in_the_window(
    two_clients: tuple[EtcdClient, EtcdClient], etcd_prefix: str
) -> None:
    c1, c2 = two_clients
    writer = EtcdEventLog(c1, etcd_prefix, "mob")
    trimmers = [EtcdEventLog(c, etcd_prefix, "mob") for c in (c1, c2)]
    appended = await one_by_one(writer, 150, "before")
    window = 40
    floors: list[int] = []
    writing = True

    async def write() -> None:
        i = 0
        while writing or i < 30:
            appended.append(await writer.append("during", identity=None, data={"i": i}))
            i += 1

    async def trim(log: EtcdEventLog) -> None:
        for _ in range(40):
            # Small passes, so the two interleave at every step.
            report = await log.retain(max_age=None, max_count=window, max_batches=7)
            floors.append(report.floor)

    async def audit() -> None:
        """The floor only ever rises, whoever raised it last."""
        seen = 0
        while writing:
            _, floor, _ = await trimmers[1]._frontier()
            assert floor >= seen, f"the floor went down from {seen} to {floor}"
            seen = floor
            await asyncio.sleep(0)

    writer_task = asyncio.create_task(write())
    auditor = asyncio.create_task(audit())
    await asyncio.gather(*(trim(t) for t in trimmers))
    writing = False
    await writer_task
    await auditor
    for log in trimmers:  # settle: no pass left to do
        while (await log.retain(max_age=None, max_count=window)).more:
            pass

    retained = await read_all(trimmers[1])
    # Exactly the newest `window` events of everything appended: no hole, no extra.
    assert retained == appended[-window:]
    # Every event above the floor is there, every one at or below it is gone.
    _, floor, _ = await trimmers[0]._frontier()
    assert max(floors) <= floor < retained[0].cursor
    assert all(e.cursor <= floor for e in appended[: -len(retained)])
    assert await batch_keys(c1, etcd_prefix) == len(retained)
    assert await trimmers[0].list(retained[0].cursor - 1, 1)  # a valid cursor


class PausedTrimmer(EtcdEventLog):
    """A trimmer that stops between its plan and its commit until released."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.planned = asyncio.Event()
        self.go = asyncio.Event()

    async def _raise_floor(self, cursor: int) -> int:
        self.planned.set()
        await self.go.wait()
        return await super()._raise_floor(cursor)


async def test_a_late_trimmer_with_an_old_plan_cuts_nothing_it_should_not(
    two_clients: tuple[EtcdClient, EtcdClient], etcd_prefix: str
) -> None:
    c1, c2 = two_clients
    slow = PausedTrimmer(c1, etcd_prefix, "mob")
    fast = EtcdEventLog(c2, etcd_prefix, "mob")
    appended = await one_by_one(fast, 100)
    # The slow one plans "keep 60" (cut 40), then stalls before it commits.
    late = asyncio.create_task(slow.retain(max_age=None, max_count=60))
    await asyncio.wait_for(slow.planned.wait(), 20)
    # Meanwhile another replica keeps a smaller window, and writers go on.
    assert (await fast.retain(max_age=None, max_count=20)).floor == appended[79].cursor
    appended += await one_by_one(fast, 10, "later")
    slow.go.set()
    report = await asyncio.wait_for(late, 20)
    # The floor stays where the other trimmer put it; nothing above it is gone.
    assert report.floor == appended[79].cursor
    _, floor, _ = await fast._frontier()
    assert floor == appended[79].cursor
    assert await read_all(fast) == appended[80:]
    assert await batch_keys(c1, etcd_prefix) == 30
    await stale(fast, appended[50].cursor)


async def test_one_trimmer_per_round(
    two_clients: tuple[EtcdClient, EtcdClient], etcd_prefix: str
) -> None:
    c1, c2 = two_clients
    logs = [EtcdEventLog(c, etcd_prefix, "mob") for c in (c1, c2)]
    appended = await one_by_one(logs[0], 6)
    trimmers = [EventTrimmer(log, Retention(0, 2, 0.05)) for log in logs]
    rounds: list[list[bool]] = []
    for _ in range(4):  # replicas on one schedule: all try, one wins
        results = await asyncio.gather(*(t.run_once() for t in trimmers))
        rounds.append([r is not None for r in results])
    assert all(r.count(True) == 1 for r in rounds), rounds
    assert await read_all(logs[1]) == appended[4:]


async def test_trimmer_loop_keeps_the_window(etcd_client: EtcdClient, etcd_prefix: str) -> None:
    log = EtcdEventLog(etcd_client, etcd_prefix, "mob")
    trimmer = EventTrimmer(log, Retention(max_age=0, max_count=3, interval=0.05))
    trimmer.start()
    try:
        appended = await one_by_one(log, 12)

        async def trimmed() -> bool:
            return await batch_keys(etcd_client, etcd_prefix) <= 3

        await until(trimmed, "the trimmer to keep 3 events", timeout=30.0)
        assert await read_all(log) == appended[-3:]
    finally:
        await trimmer.stop()


# -- the served orchestrator ---------------------------------------------------------------------


async def test_served_orchestrator_trims_its_log_by_age(
    tmp_path: Path, etcd_session: EtcdProcess, etcd_client: EtcdClient
) -> None:
    prefix = f"/retention-{uuid.uuid4().hex[:8]}"
    roster = write_roster(tmp_path / "roster.toml", ["a1", "a2"])
    async with running_services(
        ["all"],
        etcd_endpoints=[etcd_session.endpoint],
        etcd_prefix=prefix,
        roster=str(roster),
        data_dir=str(tmp_path),
        continuity_backend="sqlite",
        lease_ttl=3.0,
        event_retention=4.0,
        event_retention_count=0,
        event_trim_interval=0.2,
    ) as (_server, channel, _):
        o = stub(channel)

        async def logged_turn() -> svc.ListEventsResponse:
            """The log from 0 once it shows a turn (events are appended in the background,
            in batches that gather for a moment)."""
            reply = svc.ListEventsResponse()

            async def has_turn() -> bool:
                nonlocal reply
                request = svc.ListEventsRequest(after_seq=0, page_size=100)
                reply = await o.ListEvents(request, timeout=5)
                return any(e.kind == "turn_completed" for e in reply.events)

            await until(has_turn, "the turn's event to be logged")
            return reply

        await o.Send(send_request("a1", "remember x"), timeout=20)
        first = await logged_turn()
        assert first.events, "activations and the turn are logged"
        old = first.events[0].cursor
        seen_through = first.latest_cursor // CURSOR_STRIDE  # etcd revision of the newest
        assert min(await batch_revisions(etcd_client, prefix)) <= seen_through

        # After the window, the old events are gone from etcd...
        async def old_gone() -> bool:
            return all(r > seen_through for r in await batch_revisions(etcd_client, prefix))

        await until(old_gone, "the events older than the window to be deleted", timeout=30.0)

        # ... ListEvents from 0 starts at the floor, and a cursor below it is stale.
        await o.Send(send_request("a2", "remember y"), timeout=20)
        reply = await logged_turn()
        assert all(e.cursor > first.latest_cursor for e in reply.events), "only newer ones, from 0"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await o.ListEvents(svc.ListEventsRequest(after_seq=old, page_size=10), timeout=5)
        assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert reason(err.value) == "STALE_EVENT_CURSOR"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in o.WatchEvents(svc.WatchEventsRequest(after_seq=old), timeout=5):
                pass
        assert reason(err.value) == "STALE_EVENT_CURSOR"
