"""Streamed turns (SendStream, DispatchStream) and turn tickets through the Python client,
against an `llm` agent on a loopback Chat Completions server: the reply's pieces come
before the receipt, a client that goes away mid-stream leaves the turn to finish and
checkpoint once, and `mobkit send --stream` prints the pieces as they arrive."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from mobkit.client import AsyncMobKit
from mobkit.core.types import DispatchReceipt
from mobkit.orchestrator.tickets import TurnState
from mobkit.runtime.sdk import TurnProgress
from mobkit.testing.fake_openai import FakeOpenAI, Say, Slow
from mobkit.testing.fleet import wait_fleet
from mobkit.testing.servers import running_services
from mobkit.testing.suite import until

pytestmark = pytest.mark.timeout(180)

ROSTER = """
[profiles]
llm = "llm"
notebook = "notebook"

[[agents]]
identity = "sage"
profile = "llm"

[[agents]]
identity = "quiet"
profile = "notebook"
addressability = "internal_only"
"""


@pytest.fixture
def model() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def suite(tmp_path: Path, etcd_session: Any, model: FakeOpenAI) -> AsyncIterator[str]:
    roster = tmp_path / "roster.toml"
    roster.write_text(ROSTER)
    async with running_services(
        ["all"],
        etcd_endpoints=[etcd_session.endpoint],
        etcd_prefix=f"/stream-{uuid.uuid4().hex[:8]}",
        roster=str(roster),
        data_dir=str(tmp_path),
        continuity_backend="sqlite",
        sections={"llm": {"base_url": model.base_url, "model": "tiny", "max_retries": 0}},
    ) as (server, channel, _):
        await wait_fleet(channel, 2, owners=1, timeout=30)
        yield f"127.0.0.1:{server.port}"


async def test_the_reply_streams_before_its_receipt(suite: str, model: FakeOpenAI) -> None:
    model.script(Say("once upon a time", chunks=4))
    async with AsyncMobKit(suite, timeout=10) as mk:
        items = [item async for item in mk.send_stream("sage", "a story")]
        deltas = [i.text for i in items if isinstance(i, TurnProgress) and i.kind == "delta"]
        *progress, receipt = items
        assert isinstance(receipt, DispatchReceipt)
        assert len(deltas) >= 2 and "".join(deltas) == receipt.output == "once upon a time"
        assert all(isinstance(i, TurnProgress) for i in progress)

        # An agent that streams nothing: the receipt alone; Dispatch reaches internal ones.
        quiet = [i async for i in mk.send_stream("quiet", "remember x", dispatch=True)]
        assert len(quiet) == 1 and isinstance(quiet[0], DispatchReceipt)


async def test_a_client_gone_mid_stream_leaves_the_turn_to_finish_once(
    suite: str, model: FakeOpenAI
) -> None:
    model.script(Slow(1.5, Say("late but whole")))
    async with AsyncMobKit(suite, timeout=10) as mk:
        before = (await mk.status("sage")).checkpoint_version or 0
        stream = mk.send_stream("sage", "take your time", idempotency_key="gone-1")
        reader = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.3)
        reader.cancel()  # the client goes away before any piece arrived
        with pytest.raises(asyncio.CancelledError):
            await reader
        await stream.aclose()

        async def checkpointed() -> bool:
            return ((await mk.status("sage")).checkpoint_version or 0) > before

        await until(checkpointed, "the abandoned turn checkpointed", 20)
        replay = await mk.send("sage", "take your time", idempotency_key="gone-1")
        assert replay.output == "late but whole"
        assert len(model.requests) == 1  # the turn ran once; the retry was a replay


async def test_a_ticket_through_the_client(suite: str, model: FakeOpenAI) -> None:
    model.script(Say("ticketed"))
    async with AsyncMobKit(suite, timeout=10) as mk:
        ticket = await mk.submit_turn("sage", "later", idempotency_key="t-1")
        done = await mk.wait_for_turn(ticket.turn_id)
        assert done.state is TurnState.SUCCEEDED and done.receipt is not None
        assert done.receipt.output == "ticketed"
        assert (await mk.get_turn(ticket.turn_id)) == done


async def test_mobkit_send_stream_prints_the_pieces(suite: str, model: FakeOpenAI) -> None:
    model.script(Say("streamed to the terminal", chunks=5))
    # The suite serves from this test's event loop: the CLI runs beside it, not blocking it.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mobkit.cli",
        "send",
        "sage",
        "hello",
        "--stream",
        "--addr",
        suite,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out.decode() == "streamed to the terminal\n"
    assert "sage: session " in err.decode() and "fencing token" in err.decode()
