"""The orchestrator with its runtime in another process (``mobkit serve runtime``):
agents message peers and call module tools over RunTurnStream, refusals keep their
reasons, and a runtime SIGKILLed mid-turn fails the turn cleanly without a
checkpoint."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.testing.fleet import wait_fleet
from mobkit.testing.processes import ServeProcess
from mobkit.testing.servers import running_services
from mobkit.testing.suite import reason, send_request, stub, until, write_roster

pytestmark = pytest.mark.timeout(180)

TEAM = ["alice", "bob", "carol"]
PROVIDERS = ["lease", "continuity", "roster", "topology", "customizer", "orchestrator"]
GRANTS = {"alice": ["clock.now", "clock.nope", "fake.block"], "bob": ["clock.now"]}
FAKE_MODULE = Path(__file__).parent.parent / "modules" / "fake_module.py"


def sections() -> dict[str, Any]:
    return {
        # alice is the hub: bob and carol may message only her.
        "topology": {"hubs": ["alice"]},
        "modules": {
            "namespace": "remote",
            "module": [
                {"id": "clock", "python_module": "mobkit.examples_modules.clock"},
                {"id": "fake", "command": sys.executable, "args": [str(FAKE_MODULE)]},
            ],
        },
        "customizer": {
            "rules": [
                {
                    "name": f"{identity}-tools",
                    "match": {"identity": identity},
                    "external_tools": [{"name": name} for name in tools],
                }
                for identity, tools in GRANTS.items()
            ]
        },
    }


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[ServeProcess]:
    with ServeProcess("runtime", ["--log-level", "WARNING"], log_dir=tmp_path) as proc:
        yield proc


@pytest.fixture
async def orch(tmp_path: Path, etcd_session: Any, runtime: ServeProcess) -> AsyncIterator[Any]:
    roster = write_roster(tmp_path / "roster.toml", TEAM)
    async with running_services(
        PROVIDERS,
        etcd_endpoints=[etcd_session.endpoint],
        etcd_prefix=f"/remote-rt-{uuid.uuid4().hex[:8]}",
        roster=str(roster),
        data_dir=str(tmp_path),
        continuity_backend="sqlite",
        lease_ttl=10.0,  # a loaded machine's late renewal must not tear alice down
        runtime_addr=runtime.address,
        sections=sections(),
    ) as (_server, channel, _):
        await wait_fleet(channel, len(TEAM), owners=1, timeout=60)
        yield stub(channel)


async def version(o: Any, identity: str) -> int:
    reply = await o.GetIdentityStatus(svc.GetIdentityStatusRequest(identity=identity), timeout=5)
    return int(reply.status.checkpoint_version)


async def send(o: Any, identity: str, text: str) -> str:
    reply = await o.Send(send_request(identity, text), timeout=60)
    return str(reply.receipt.output)


async def refused(o: Any, identity: str, text: str) -> tuple[grpc.StatusCode, str | None]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await o.Send(send_request(identity, text), timeout=60)
    return err.value.code(), reason(err.value)


async def test_a_peer_message_and_a_tool_call_inside_one_turn(orch: Any) -> None:
    """alice's turn asks bob, whose own turn (in the same remote runtime, while alice's
    stream waits) calls a module tool: both callbacks cross RunTurnStream."""
    output = await send(orch, "alice", "ask bob tool clock.now {}")
    assert output.startswith("[alice turn 1] asked bob.")
    assert "bob said: [bob turn 1] called clock.now: {" in output and '"iso": ' in output
    assert (await version(orch, "alice"), await version(orch, "bob")) == (1, 1)
    assert "called clock.now" in await send(orch, "alice", "tool clock.now {}")


async def test_refusals_come_back_with_their_reasons(orch: Any) -> None:
    # carol's draft grants no tool; bob has no edge to carol.
    assert await refused(orch, "carol", "tool clock.now {}") == (
        grpc.StatusCode.PERMISSION_DENIED,
        "TOOL_NOT_GRANTED",
    )
    assert await refused(orch, "bob", "ask carol hello") == (
        grpc.StatusCode.PERMISSION_DENIED,
        "TOPOLOGY_VIOLATION",
    )
    assert await refused(orch, "alice", "tool clock.nope {}") == (  # granted, not offered
        grpc.StatusCode.NOT_FOUND,
        "TOOL_NOT_FOUND",
    )
    assert [await version(orch, i) for i in TEAM] == [0, 0, 0]
    # The failed turns left no trace: the next ones run on the checkpointed state.
    assert (await send(orch, "bob", "recall")).startswith("[bob turn 1] recalling.")


async def test_a_runtime_killed_mid_turn_fails_the_turn_and_keeps_the_checkpoint(
    orch: Any, runtime: ServeProcess, tmp_path: Path
) -> None:
    await send(orch, "alice", "remember before")
    assert await version(orch, "alice") == 1
    marker = tmp_path / "blocked"
    turn = asyncio.ensure_future(
        orch.Send(send_request("alice", f'tool fake.block {{"marker": "{marker}"}}'), timeout=60)
    )

    async def blocked() -> bool:
        return marker.exists()

    await until(blocked, "the tool call in progress", timeout=30)
    runtime.kill()  # SIGKILL while alice's turn waits for its tool's answer
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await turn
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert reason(err.value) == "BACKEND_UNAVAILABLE"
    assert await version(orch, "alice") == 1
    # A new runtime has no sessions: the next turn resumes alice's from its checkpoint.
    runtime.start()
    recalled = await send(orch, "alice", "recall")
    assert recalled == "[alice turn 2] recalling. I remember: before"
    assert await version(orch, "alice") == 2
