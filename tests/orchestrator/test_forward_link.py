"""Forwarded turns over one stream per peer: both ends on a real gRPC server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from mobkit.core.errors import BackendUnavailable, NotActive
from mobkit.gen.orchestrator.v1 import orchestrator_pb2 as pb
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.orchestrator.forward_link import (
    METHOD,
    ForwardLink,
    StreamUnsupported,
    serve_forwarded,
)
from mobkit.orchestrator.servicer import ERRORS
from mobkit.runtime.sdk import TurnProgress
from mobkit.wire.calls import decoder
from mobkit.wire.errors import RemoteError

Run = Callable[[svc.ForwardStreamRequest, float | None, Any], Any]


@asynccontextmanager
async def owner(run: Run | None) -> AsyncIterator[tuple[ForwardLink, grpc.aio.Server]]:
    """A server answering ForwardStream with ``run`` (None: not offered), and a link."""
    server = grpc.aio.server()
    if run is not None:

        async def forward(requests: Any, _ctx: Any) -> AsyncIterator[Any]:
            async for answer in serve_forwarded(requests, run, ERRORS):
                yield answer

        service, method = METHOD.lstrip("/").split("/")
        handler = grpc.stream_stream_rpc_method_handler(
            forward,
            request_deserializer=svc.ForwardStreamRequest.FromString,
            response_serializer=svc.ForwardStreamResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, {method: handler}),)
        )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    link = ForwardLink(channel, decoder())
    try:
        yield link, server
    finally:
        await link.close()
        await channel.close()
        await server.stop(0)


def send(identity: str) -> svc.ForwardStreamRequest:
    return svc.ForwardStreamRequest(send=svc.SendRequest(identity=identity))


async def test_concurrent_calls_share_one_stream_and_are_matched_by_id() -> None:
    async def run(
        request: svc.ForwardStreamRequest, _t: float | None, _p: Any = None
    ) -> pb.DispatchReceipt:
        n = int(request.send.identity[1:])
        await asyncio.sleep(0.001 * (20 - n))  # later calls answer first
        return pb.DispatchReceipt(identity=request.send.identity, output=f"out {n}")

    async with owner(run) as (link, _):
        replies = await asyncio.gather(*(link.call(send(f"a{n}"), 10) for n in range(20)))
        assert [r.output for r in replies] == [f"out {n}" for n in range(20)]
        assert link._reader is not None and not link._reader.done()  # still open
        assert link._pending == {}


async def test_progress_comes_before_the_answer_and_only_to_calls_that_asked() -> None:
    asked: dict[str, bool] = {}

    async def run(
        request: svc.ForwardStreamRequest, _t: float | None, progress: Any
    ) -> pb.DispatchReceipt:
        name = request.send.identity
        asked[name] = progress is not None
        for piece in ("one ", "two ", name):
            if progress is not None:
                await progress(TurnProgress("delta", piece))
            await asyncio.sleep(0.005)
        return pb.DispatchReceipt(identity=name, output=f"one two {name}")

    heard: dict[str, list[str]] = {"x": [], "y": []}

    def sink(name: str) -> Any:
        async def hear(event: TurnProgress) -> None:
            assert name not in answered  # progress never after the answer
            heard[name].append(event.text)

        return hear

    answered: set[str] = set()

    async def streamed(name: str) -> str:
        receipt = await link.call(send(name), 10, sink(name))
        answered.add(name)
        return receipt.output

    async with owner(run) as (link, _):
        plain, *outputs = await asyncio.gather(
            link.call(send("z"), 10), streamed("x"), streamed("y")
        )
        assert outputs == ["one two x", "one two y"] and plain.output == "one two z"
        assert heard == {"x": ["one ", "two ", "x"], "y": ["one ", "two ", "y"]}
        assert asked == {"x": True, "y": True, "z": False}  # z's owner made no progress answers
        assert link._progress == {} and link._pending == {}


async def test_an_owners_error_comes_back_as_the_domain_error() -> None:
    async def run(
        request: svc.ForwardStreamRequest, _t: float | None, _p: Any = None
    ) -> pb.DispatchReceipt:
        raise NotActive(request.send.identity, "between_owners", retry_after_ms=300)

    async with owner(run) as (link, _):
        with pytest.raises(NotActive) as refused:
            await link.call(send("a1"), 10)
        assert refused.value.reason == "NOT_ACTIVE"
        assert refused.value.metadata["identity"] == "a1"


async def test_a_crash_on_the_owner_is_internal_without_its_text() -> None:
    async def run(
        _r: svc.ForwardStreamRequest, _t: float | None, _p: Any = None
    ) -> pb.DispatchReceipt:
        raise RuntimeError("secret detail")

    async with owner(run) as (link, _):
        with pytest.raises(RemoteError) as failed:
            await link.call(send("a1"), 10)
        assert failed.value.metadata.get("code", "INTERNAL") == "INTERNAL"
        assert "secret" not in str(failed.value)


async def test_a_timed_out_or_abandoned_call_is_withdrawn_on_the_owner() -> None:
    started: list[str] = []
    stopped: list[str] = []

    async def run(
        request: svc.ForwardStreamRequest, timeout: float | None, _p: Any = None
    ) -> pb.DispatchReceipt:
        started.append(request.send.identity)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.append(request.send.identity)
            raise
        return pb.DispatchReceipt()

    async with owner(run) as (link, _):
        # As a unary call past its deadline decodes: the caller then looks again.
        with pytest.raises(BackendUnavailable, match="timed out"):
            await link.call(send("slow"), 0.2)
        abandoned = asyncio.ensure_future(link.call(send("gone"), None))
        for _ in range(200):
            if "gone" in started:
                break
            await asyncio.sleep(0.01)
        abandoned.cancel()
        for _ in range(500):
            if set(stopped) == {"slow", "gone"}:
                break
            await asyncio.sleep(0.01)
        assert set(stopped) == {"slow", "gone"}
        assert link._pending == {}


async def test_a_broken_stream_fails_what_was_in_flight_and_is_reopened() -> None:
    gate = asyncio.Event()

    async def run(
        request: svc.ForwardStreamRequest, _t: float | None, _p: Any = None
    ) -> pb.DispatchReceipt:
        if request.send.identity == "hang":
            await gate.wait()
        return pb.DispatchReceipt(output="ok")

    async with owner(run) as (link, server):
        assert (await link.call(send("a"), 10)).output == "ok"
        stuck = asyncio.ensure_future(link.call(send("hang"), 30))
        await asyncio.sleep(0.2)
        await server.stop(0)  # the owner goes away mid-call
        with pytest.raises(BackendUnavailable):
            await asyncio.wait_for(stuck, 20)
        assert link._pending == {} and link._outbox is None


async def test_a_peer_without_the_stream_is_reported_for_unary_calls() -> None:
    async with owner(None) as (link, _):
        with pytest.raises(StreamUnsupported):
            await link.call(send("a"), 10)


@pytest.mark.parametrize("call_id", [0, 1, 2**64 - 1])
@pytest.mark.parametrize("timeout_ms", [0, 60_000, 2**32 - 1])
async def test_every_call_id_and_deadline_is_answered_as_sent(
    call_id: int, timeout_ms: int
) -> None:
    """The numeric fields' whole ranges: the id comes back as sent, 0 ms is no deadline."""
    seen: list[float | None] = []

    async def run(
        request: svc.ForwardStreamRequest, timeout: float | None, _p: Any = None
    ) -> pb.DispatchReceipt:
        seen.append(timeout)
        return pb.DispatchReceipt(identity=request.send.identity)

    async with owner(run) as (link, _):
        channel = link._method  # the raw stream, so the test chooses the numbers
        request = send("a1")
        request.call_id, request.timeout_ms = call_id, timeout_ms
        call = channel(iter([request]))
        answers = [answer async for answer in call]
    assert [(a.call_id, a.receipt.identity) for a in answers] == [(call_id, "a1")]
    assert len(seen) == 1
    assert (seen[0] is None) == (timeout_ms == 0)
