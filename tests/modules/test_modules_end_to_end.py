"""Modules through the whole suite: an agent's turn calls a module tool over MCP, a
module killed mid-call fails the turn cleanly, and start-up fails on a required
module that cannot start."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from modules_support import FAST, fake_module

from mobkit.gen.orchestrator.v1 import orchestrator_pb2 as pb
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.testing.servers import running_services
from mobkit.testing.suite import eventually, reason, send_request, stub, write_roster
from mobkit.wire.json import get_json

pytestmark = pytest.mark.timeout(180)

TEAM = ["alice", "bob"]
ALICE_TOOLS = ["clock.now", "fake.block", "fake.echo"]


def sections() -> dict[str, Any]:
    return {
        "modules": {
            **FAST,
            "namespace": "e2e",
            "module": [
                {
                    "id": "clock",
                    "python_module": "mobkit.examples_modules.clock",
                    "env": {"CLOCK_LABEL": "e2e-label"},
                },
                fake_module(policy="on_failure"),
            ],
        },
        # Only alice is granted tools, through the customizer's draft.
        "customizer": {
            "rules": [
                {
                    "name": "alice-tools",
                    "match": {"identity": "alice"},
                    "external_tools": [{"name": n} for n in ALICE_TOOLS],
                }
            ]
        },
    }


@pytest.fixture
async def orch(tmp_path: Path, etcd_session: Any) -> AsyncIterator[Any]:
    roster = write_roster(tmp_path / "roster.toml", TEAM)
    async with running_services(
        ["all"],
        etcd_endpoints=[etcd_session.endpoint],
        etcd_prefix=f"/modules-{uuid.uuid4().hex[:8]}",
        roster=str(roster),
        data_dir=str(tmp_path),
        continuity_backend="sqlite",
        lease_ttl=3.0,
        sections=sections(),
    ) as (_server, channel, _):
        o = stub(channel)
        await wait_active(o)
        yield o


async def wait_active(o: Any) -> None:
    async def all_active() -> bool:
        reply = await o.ListIdentityStatuses(svc.ListIdentityStatusesRequest(), timeout=5)
        return {
            s.identity for s in reply.statuses if s.state == pb.IDENTITY_LIFECYCLE_STATE_ACTIVE
        } == set(TEAM)

    for _ in range(400):
        if await all_active():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("identities never became active")


async def version(o: Any, identity: str) -> int:
    reply = await o.GetIdentityStatus(svc.GetIdentityStatusRequest(identity=identity), timeout=5)
    return int(reply.status.checkpoint_version)


async def modules(o: Any) -> dict[str, Any]:
    reply = await o.ListModules(svc.ListModulesRequest(), timeout=5)
    return {m.config.id: m for m in reply.modules}


async def event_kinds(o: Any) -> list[tuple[str, str, dict[str, Any]]]:
    reply = await o.ListEvents(svc.ListEventsRequest(after_seq=0, page_size=1000), timeout=5)
    return [(e.kind, e.agent_identity, get_json(e, "data")) for e in reply.events]


async def test_agent_turn_calls_a_module_tool(orch: Any) -> None:
    o = orch
    listed = await modules(o)
    assert list(listed) == ["clock", "fake"]  # ordered by id
    clock = listed["clock"]
    assert clock.state == pb.MODULE_STATE_RUNNING and clock.required
    assert list(clock.tools) == ["clock.now", "clock.since"]
    assert clock.config.restart_policy == pb.RESTART_POLICY_ON_FAILURE and clock.pid > 0

    reply = await o.Send(
        send_request("alice", 'tool clock.now {"utc_offset_minutes": 60}'), timeout=30
    )
    assert reply.receipt.checkpoint_version == 1
    assert "called clock.now" in reply.receipt.output
    assert '"label": "e2e-label"' in reply.receipt.output  # its pre-spawn environment
    assert "+01:00" in reply.receipt.output

    # bob's draft grants nothing: refused before any module runs, nothing recorded.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await o.Send(send_request("bob", "tool clock.now {}"), timeout=30)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason(refused.value) == "TOOL_NOT_GRANTED"
    assert await version(o, "bob") == 0
    # Status says what each build grants (the console's identity page shows it).
    for identity, granted in (("alice", sorted(ALICE_TOOLS)), ("bob", [])):
        reply = await o.GetIdentityStatus(svc.GetIdentityStatusRequest(identity=identity))
        assert list(reply.status.granted_tools) == granted

    # alice's draft names the tool, but a tool error fails the turn cleanly too.
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await o.Send(send_request("alice", 'tool clock.since {"iso": "yesterday"}'), timeout=30)
    assert reason(failed.value) == "TOOL_NOT_GRANTED"  # clock.since is not granted
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await o.Send(send_request("alice", "tool fake.echo {}"), timeout=30)
    assert reason(failed.value) == "TOOL_FAILED"
    assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await version(o, "alice") == 1

    # Lifecycle and tool calls are structural events, in cursor order.
    wanted = {("module_healthy", "clock"), ("module_healthy", "fake")}
    events: list[tuple[str, str, dict[str, Any]]] = []
    for _ in range(200):  # the sink appends in the background: bounded wait
        events = await event_kinds(o)
        seen = {(k, d.get("module")) for k, _, d in events}
        if wanted <= seen and sum(k == "tool_called" for k, _, _ in events) >= 4:
            break
        await asyncio.sleep(0.05)
    kinds = [(k, d.get("module")) for k, _, d in events]
    assert kinds.index(("module_started", "clock")) < kinds.index(("module_healthy", "clock"))
    calls = [(i, d["tool"], d["ok"], d.get("reason")) for k, i, d in events if k == "tool_called"]
    assert calls == [
        ("alice", "clock.now", True, None),
        ("bob", "clock.now", False, "TOOL_NOT_GRANTED"),
        ("alice", "clock.since", False, "TOOL_NOT_GRANTED"),
        ("alice", "fake.echo", False, "TOOL_FAILED"),
    ]

    # WatchEvents replays the same events from the same cursors, then tails live.
    stream = o.WatchEvents(svc.WatchEventsRequest(after_seq=0), timeout=30)
    watched: list[Any] = []

    async def read() -> None:
        async for item in stream:
            watched.append(item.structural)
            if len(watched) == len(events):
                return

    await asyncio.wait_for(read(), 20)
    stream.cancel()
    assert [(e.kind, get_json(e, "data").get("module")) for e in watched] == kinds


async def test_module_killed_during_a_tool_call_fails_the_turn_cleanly(
    orch: Any, tmp_path: Path
) -> None:
    o = orch
    first = await o.Send(send_request("alice", 'tool fake.echo {"text": "before"}'), timeout=30)
    assert first.receipt.checkpoint_version == 1 and "before" in first.receipt.output
    pid = (await modules(o))["fake"].pid

    marker = tmp_path / "in-call"
    call = asyncio.ensure_future(
        o.Send(send_request("alice", f'tool fake.block {{"marker": "{marker}"}}'), timeout=60)
    )
    await eventually(lambda: marker.exists() and marker.read_text() != "", "the tool call")
    assert int(marker.read_text()) == pid
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(grpc.aio.AioRpcError) as killed:
        await call
    assert killed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert reason(killed.value) == "MODULE_UNAVAILABLE"
    assert "stopped during the call to 'fake.block'" in (killed.value.details() or "")
    assert await version(o, "alice") == 1  # nothing half-written

    # on_failure: the module comes back, and the next turn continues from version 1
    # with the notebook exactly as the last checkpoint left it.
    for _ in range(400):
        fake = (await modules(o))["fake"]
        if fake.state == pb.MODULE_STATE_RUNNING and fake.pid not in (0, pid):
            break
        await asyncio.sleep(0.05)
    assert fake.restart_count == 1 and "killed by SIGKILL" in fake.detail
    after = await o.Send(send_request("alice", 'tool fake.echo {"text": "after"}'), timeout=30)
    assert after.receipt.checkpoint_version == 2
    assert "turn 2" in after.receipt.output and "fake.block" not in after.receipt.output


def _config(tmp_path: Path) -> Path:
    broken = fake_module("broken", args=("--crash-on-start", "3"))
    lines = [
        "[modules]",
        "[[modules.module]]",
        f'id = "{broken["id"]}"',
        f"command = {json.dumps(broken['command'])}",
        f"args = {json.dumps(broken['args'])}",
        "required = true",
    ]
    path = tmp_path / "mobkit.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("command", ["serve", "up"])
def test_start_up_fails_naming_a_required_module_that_cannot_start(
    tmp_path: Path, etcd_session: Any, command: str
) -> None:
    roster = write_roster(tmp_path / "roster.toml", TEAM)
    target = ["serve", "all"] if command == "serve" else ["up"]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mobkit.cli",
            *target,
            "--listen",
            "127.0.0.1:0",
            "--config",
            str(_config(tmp_path)),
            "--roster",
            str(roster),
            "--etcd-endpoints",
            etcd_session.endpoint,
            "--etcd-prefix",
            f"/modules-{uuid.uuid4().hex[:8]}",
            "--data-dir",
            str(tmp_path / "data"),
            "--log-level",
            "CRITICAL",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last == (
        f"mobkit {command}: required module 'broken' could not start: exited with code 3 "
        "before the MCP handshake: fake module refuses to start"
    )
    assert "listening on" not in run.stderr
