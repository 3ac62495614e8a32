"""The Node.js agent runtime (clients/runtime-node) under the suite's orchestrator.

Its ``relay`` agent messages a managed peer and calls a module tool during one turn,
both over RunTurnStream; refusals keep their reasons; and its snapshots are checkpointed
and fenced like any other (the orchestrator does not know which language runs its
agents)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from mobkit.core.types import AgentBuildDraft, DispatchInput
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.runtime.client import GrpcAgentRuntime
from mobkit.runtime.domain import CallbackUnavailable
from mobkit.runtime.sdk import TurnProgress
from mobkit.testing.fleet import wait_fleet
from mobkit.testing.node import node_server
from mobkit.testing.servers import running_services
from mobkit.testing.suite import reason, send_request, stub

NODE, NPM = shutil.which("node"), shutil.which("npm")
RUNTIME = Path(__file__).resolve().parents[2] / "clients" / "runtime-node"
PROVIDERS = ["lease", "continuity", "roster", "topology", "customizer", "orchestrator"]
ROSTER = """
[profiles]
relay = "relay"
echo = "echo"

[[agents]]
identity = "alice"
profile = "relay"

[[agents]]
identity = "bob"
profile = "echo"

[[agents]]
identity = "carol"
profile = "relay"
"""

pytestmark = [
    pytest.mark.skipif(
        NODE is None or NPM is None, reason="node and npm are not installed: no Node runtime run"
    ),
    pytest.mark.timeout(300),  # npm install
]


def sections() -> dict[str, Any]:
    return {
        "roster": {"agent_kinds": ["relay", "echo"]},  # what the Node runtime hosts
        "topology": {"hubs": ["alice"]},  # carol may message only alice
        "modules": {
            "namespace": "node",
            "module": [{"id": "clock", "python_module": "mobkit.examples_modules.clock"}],
        },
        "customizer": {
            "rules": [
                {
                    "name": "alice-clock",
                    "match": {"identity": "alice"},
                    "external_tools": [{"name": "clock.now"}],
                }
            ]
        },
    }


@pytest.fixture
async def node_runtime() -> AsyncIterator[str]:
    async with node_server(RUNTIME) as address:
        yield address


@pytest.fixture
async def orch(tmp_path: Path, etcd_session: Any, node_runtime: str) -> AsyncIterator[Any]:
    roster = tmp_path / "roster.toml"
    roster.write_text(ROSTER)
    async with running_services(
        PROVIDERS,
        etcd_endpoints=[etcd_session.endpoint],
        etcd_prefix=f"/node-rt-{uuid.uuid4().hex[:8]}",
        roster=str(roster),
        data_dir=str(tmp_path),
        continuity_backend="sqlite",
        lease_ttl=10.0,
        runtime_addr=node_runtime,
        sections=sections(),
    ) as (_server, channel, _):
        await wait_fleet(channel, 3, owners=1, timeout=60)
        yield stub(channel)


async def version(o: Any, identity: str) -> int:
    reply = await o.GetIdentityStatus(svc.GetIdentityStatusRequest(identity=identity), timeout=5)
    return int(reply.status.checkpoint_version)


async def test_a_node_agent_messages_a_peer_and_calls_a_tool_in_one_turn(orch: Any) -> None:
    reply = await orch.Send(send_request("alice", "relay bob clock.now {}"), timeout=60)
    output = reply.receipt.output
    assert output.startswith("[alice turn 1 in node] bob said: hello from alice; clock.now -> {")
    assert '"iso":' in output
    assert reply.receipt.checkpoint_version == 1
    # bob's turn (the peer message) is checkpointed too, under its own fence.
    assert await version(orch, "bob") == 1
    again = await orch.Send(send_request("alice", "hello"), timeout=60)
    assert again.receipt.output == '[alice turn 2 in node] noted "hello"'


async def test_refusals_from_a_node_runtime_keep_their_reasons(orch: Any) -> None:
    for identity, text, code, why in [
        (
            "carol",
            "relay bob clock.now {}",
            grpc.StatusCode.PERMISSION_DENIED,
            "TOPOLOGY_VIOLATION",
        ),
        (
            "carol",
            "relay alice clock.now {}",
            grpc.StatusCode.PERMISSION_DENIED,
            "TOOL_NOT_GRANTED",
        ),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await orch.Send(send_request(identity, text), timeout=60)
        assert (err.value.code(), reason(err.value)) == (code, why), err.value.details()
    # carol's failed turns changed nothing.
    assert await version(orch, "carol") == 0
    after = await orch.Send(send_request("carol", "hi"), timeout=60)
    assert after.receipt.output == '[carol turn 1 in node] noted "hi"'


async def test_the_node_runtime_speaks_the_runtime_protocol(node_runtime: str) -> None:
    """Directly through MobKit's runtime adapter: progress arrives, a snapshot resumes,
    and the unary RunTurn has no way back."""
    async with grpc.aio.insecure_channel(node_runtime) as channel:
        runtime = GrpcAgentRuntime(channel, timeout=10)
        info = await runtime.create_session("dave", "relay", AgentBuildDraft())
        seen: list[TurnProgress] = []

        async def sink(event: TurnProgress) -> None:
            seen.append(event)

        async def peer(to: str, text: str) -> str:
            return f"{to} heard {text}"

        async def tool(name: str, arguments: dict[str, Any]) -> Any:
            return {"big": 2**40, "args": arguments}

        outcome = await runtime.run_turn(
            info.session_id,
            DispatchInput('relay erin t.x {"n": 1}'),
            peers=("erin",),
            peer_sender=peer,
            tool_caller=tool,
            progress=sink,
        )
        assert outcome.output == (
            '[dave turn 1 in node] erin said: erin heard hello from dave; t.x -> {"big":'
            f'{2**40},"args":{{"n":1}}}}'
        )
        assert "".join(e.text for e in seen if e.kind == "delta") == outcome.output
        snap = await runtime.export_snapshot(info.session_id)
        await runtime.close_session(info.session_id)
        await runtime.resume_session("dave", "", info.session_id, "rt-1", snap, AgentBuildDraft())
        with pytest.raises(CallbackUnavailable):
            await runtime.run_turn(
                info.session_id, DispatchInput("relay erin t.x"), peers=("erin",)
            )
        assert (await runtime.run_turn(info.session_id, DispatchInput("x"))).output.startswith(
            "[dave turn 2 in node]"
        )
