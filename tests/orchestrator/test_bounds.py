"""Bounds on what a turn or a restart adds to: the event sink's queue, peer channels."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import grpc

from mobkit.events.memory import MemoryEventLog
from mobkit.orchestrator.event_sink import EventSink
from mobkit.orchestrator.routing import MAX_PEER_CHANNELS, Router


async def test_sink_queue_is_bounded_and_records_the_gap() -> None:
    class Stuck:
        """A log that cannot keep up: appends wait until released."""

        def __init__(self) -> None:
            self.release = asyncio.Event()
            self.inner = MemoryEventLog("mob")

        async def append_many(self, events: Any) -> Any:
            await self.release.wait()
            return await self.inner.append_many(events)

    stuck = Stuck()
    sink = EventSink(stuck, max_queue=10, linger=0)
    sink.emit("first", None, {})
    await asyncio.sleep(0)  # the appender takes "first" and waits in append_many
    for i in range(25):
        sink.emit("e", None, {"i": i})
    assert sink.dropped == 15 and len(sink._queue) == 10
    stuck.release.set()
    await sink.flush()
    sink.emit("later", None, {})
    await sink.close()
    kinds = [(e.kind, e.data) for e in (await stuck.inner.list(0, 1000))[0]]
    assert kinds[0] == ("first", {})
    assert [d["i"] for k, d in kinds if k == "e"] == list(range(10))
    assert ("events_dropped", {"count": 15}) in kinds
    assert kinds[-1] == ("later", {})
    assert sink.dropped_total == 15


async def test_peer_channels_are_bounded_least_recently_used_first() -> None:
    opened: list[grpc.aio.Channel] = []

    def open_channel(address: str) -> grpc.aio.Channel:
        opened.append(grpc.aio.insecure_channel(address))
        return opened[-1]

    router = Router(cast(Any, None), open_channel)
    addresses = [f"127.0.0.1:{20000 + i}" for i in range(MAX_PEER_CHANNELS + 5)]
    try:
        for address in addresses[:MAX_PEER_CHANNELS]:
            router._stub(address)
        router._stub(addresses[0])  # used again: the most recent now
        assert len(opened) == MAX_PEER_CHANNELS  # reused, not reopened
        for address in addresses[MAX_PEER_CHANNELS:]:
            router._stub(address)
        assert len(router._channels) == MAX_PEER_CHANNELS
        assert addresses[0] in router._channels
        assert not any(a in router._channels for a in addresses[1:6])  # the 5 oldest
        # Closed in the background (with a grace for calls in flight: none here).
        await asyncio.wait_for(asyncio.gather(*router._evicted.values()), 20)
        assert not router._evicted
        assert all(opened[i]._channel.closed() for i in range(1, 6))
        assert not opened[0]._channel.closed()
    finally:
        await router.close()
    assert all(ch._channel.closed() for ch in opened)


async def test_sink_lets_a_batch_gather_for_its_linger_unless_flushed() -> None:
    class Counting:
        def __init__(self) -> None:
            self.batches: list[int] = []
            self.inner = MemoryEventLog("mob")

        async def append_many(self, events: Any) -> Any:
            self.batches.append(len(events))
            return await self.inner.append_many(events)

    log = Counting()
    sink = EventSink(log, linger=3600)
    for i in range(5):  # turns a few milliseconds apart
        sink.emit("turn_completed", "a", {"i": i})
        await asyncio.sleep(0.001)
    assert log.batches == []  # still gathering
    await sink.flush()  # a flush (and close) does not wait for the linger
    assert log.batches == [5]
    for i in range(300):  # a full batch goes at once
        sink.emit("e", None, {"i": i})
    for _ in range(100):  # bounded: the linger is an hour
        if len(log.batches) > 1:
            break
        await asyncio.sleep(0.01)
    assert log.batches[1] == 256
    await sink.close()
    assert sum(log.batches) == 305
