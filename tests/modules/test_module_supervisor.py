"""The supervisor with real module processes: restart policies, crash loops, tool calls."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from modules_support import FAST, Events, fake_module

from mobkit.core.types import AgentBuildDraft, ExternalToolDef
from mobkit.modules.config import parse_modules
from mobkit.modules.domain import (
    ModuleHealth,
    ModuleStartFailed,
    ModuleUnavailable,
    ToolFailed,
    ToolNotFound,
    ToolNotGranted,
)
from mobkit.modules.supervisor import ModuleSupervisor
from mobkit.testing.suite import eventually

pytestmark = pytest.mark.timeout(120)

H = ModuleHealth
Start = Callable[..., Awaitable[tuple[ModuleSupervisor, Events]]]


@pytest.fixture
async def supervise(tmp_path: Path) -> AsyncIterator[Start]:
    """Start a supervisor over the given module entries; always stopped afterwards."""
    started: list[ModuleSupervisor] = []

    async def start(*modules: dict[str, Any], **section: Any) -> tuple[ModuleSupervisor, Events]:
        events = Events()
        config = parse_modules({**FAST, **section, "module": list(modules)})
        supervisor = ModuleSupervisor(config, log_dir=tmp_path / "modules", emit=events)
        started.append(supervisor)
        await supervisor.start()
        return supervisor, events

    yield start
    for supervisor in started:
        await supervisor.stop()


def pid_of(supervisor: ModuleSupervisor, module: str = "fake") -> int:
    pid = supervisor.status(module).pid
    assert pid is not None
    return pid


@pytest.mark.parametrize("policy", ["on_failure", "always"])
async def test_sigkill_is_restarted_under_on_failure_and_always(
    supervise: Start, policy: str
) -> None:
    supervisor, events = await supervise(fake_module(policy=policy))
    first = pid_of(supervisor)
    os.kill(first, signal.SIGKILL)

    def restarted() -> bool:
        s = supervisor.status("fake")
        return s.state is H.HEALTHY and s.pid not in (None, first)

    await eventually(restarted, "a new healthy process")
    status = supervisor.status("fake")
    assert status.restart_count == 1
    assert "killed by SIGKILL" in status.detail
    [crash] = events.of("module_crashed")
    assert crash["exit_code"] == -signal.SIGKILL and crash["restart"] is True
    assert events.kinds("fake").count("module_started") == 2
    assert await supervisor.call_tool("fake.pid", {}) == {"result": status.pid}


async def test_sigkill_is_not_restarted_under_never(supervise: Start) -> None:
    supervisor, events = await supervise(fake_module(policy="never"))
    os.kill(pid_of(supervisor), signal.SIGKILL)
    await eventually(lambda: supervisor.status("fake").state is H.UNHEALTHY, "unhealthy")
    status = supervisor.status("fake")
    assert status.restart_count == 0 and status.pid is None
    assert "killed by SIGKILL" in status.detail
    assert events.kinds("fake").count("module_started") == 1
    assert "module_restarting" not in events.kinds()
    with pytest.raises(ModuleUnavailable, match="unhealthy"):
        await supervisor.call_tool("fake.echo", {"text": "hi"})


@pytest.mark.parametrize(
    ("policy", "restarted"), [("always", True), ("on_failure", False), ("never", False)]
)
async def test_clean_exit_is_restarted_only_under_always(
    supervise: Start, policy: str, restarted: bool
) -> None:
    supervisor, events = await supervise(fake_module(policy=policy))
    first = pid_of(supervisor)
    assert await supervisor.call_tool("fake.exit_soon", {"code": 0}) == {"result": "bye"}
    await eventually(lambda: "module_exited" in events.kinds(), "the exit")
    [exited] = events.of("module_exited")
    assert exited["exit_code"] == 0 and exited["restart"] is restarted
    if restarted:
        await eventually(
            lambda: (
                supervisor.status("fake").state is H.HEALTHY
                and supervisor.status("fake").pid != first
            ),
            "a new healthy process",
        )
        assert supervisor.status("fake").restart_count == 1
    else:
        await eventually(lambda: supervisor.status("fake").state is H.STOPPED, "stopped")
        assert supervisor.status("fake").restart_count == 0
        assert events.kinds("fake").count("module_started") == 1


async def test_crash_loop_is_parked_with_its_last_error(supervise: Start) -> None:
    supervisor, events = await supervise(
        fake_module(policy="always", required=False, args=("--crash-on-start", "3"))
    )
    await eventually(lambda: supervisor.status("fake").state is H.UNHEALTHY, "parked")
    status = supervisor.status("fake")
    assert status.restart_count == FAST["crash_loop_limit"] - 1
    assert status.detail.startswith("parked after 3 exits")
    assert "exited with code 3 before the MCP handshake" in status.detail
    assert "fake module refuses to start" in status.detail  # its stderr
    assert events.kinds("fake").count("module_started") == 3
    [parked] = events.of("module_parked")
    assert parked["exits"] == 3
    with pytest.raises(ModuleUnavailable, match="parked"):
        await supervisor.call_tool("fake.echo", {"text": "hi"})


def log_files(log_dir: Path, module: str = "fake") -> dict[str, int]:
    """The module's log files and their sizes."""
    return {f.name: f.stat().st_size for f in sorted(log_dir.glob(f"{module}.log*"))}


def logged_lines(log_dir: Path, module: str = "fake", backups: int = 2) -> list[str]:
    """Every retained line, oldest file first."""
    names = [f"{module}.log.{i}" for i in range(backups, 0, -1)] + [f"{module}.log"]
    lines: list[str] = []
    for name in names:
        if (log_dir / name).exists():
            lines += (log_dir / name).read_text().splitlines()
    return lines


async def test_a_chatty_module_log_rotates_and_stays_bounded(
    supervise: Start, tmp_path: Path
) -> None:
    log_dir = tmp_path / "modules"
    supervisor, _ = await supervise(
        fake_module(args=("--spam", "3000")), log_max_bytes=20_000, log_backups=2
    )
    pid = pid_of(supervisor)
    await eventually(
        lambda: f"spam done {pid}" in (log_dir / "fake.log").read_text(), "the last line"
    )
    files = log_files(log_dir)
    assert set(files) == {"fake.log", "fake.log.1", "fake.log.2"}  # 300 KB written
    assert all(size <= 20_000 for size in files.values()), files
    # The newest lines are all there, in order, up to the very last one.
    lines = logged_lines(log_dir)
    assert lines[-1] == f"spam done {pid}"
    numbers = [int(line.split()[1]) for line in lines[:-1] if line.startswith("spam 0")]
    assert len(numbers) > 300 and numbers == list(range(3000 - len(numbers), 3000))
    # Restarts keep writing the same rotated files: still bounded.
    os.kill(pid, signal.SIGKILL)
    await eventually(
        lambda: (
            supervisor.status("fake").state is H.HEALTHY
            and supervisor.status("fake").pid not in (None, pid)
        ),
        "restarted",
    )
    again = pid_of(supervisor)
    await eventually(
        lambda: f"spam done {again}" in (log_dir / "fake.log").read_text(), "the new last line"
    )
    files = log_files(log_dir)
    assert set(files) == {"fake.log", "fake.log.1", "fake.log.2"}
    assert all(size <= 20_000 for size in files.values()), files


async def test_a_crash_after_much_logging_still_reports_its_last_line(
    supervise: Start, tmp_path: Path
) -> None:
    supervisor, _ = await supervise(
        fake_module(
            policy="never", required=False, args=("--spam", "2000", "--crash-on-start", "4")
        ),
        log_max_bytes=10_000,
        log_backups=1,
    )
    await eventually(lambda: supervisor.status("fake").state is H.UNHEALTHY, "crashed")
    detail = supervisor.status("fake").detail
    assert "exited with code 4 before the MCP handshake" in detail
    assert detail.endswith("fake module refuses to start"), detail  # the very last line
    files = log_files(tmp_path / "modules")
    assert set(files) == {"fake.log", "fake.log.1"}
    assert all(size <= 10_000 for size in files.values()), files
    assert logged_lines(tmp_path / "modules", backups=1)[-1] == "fake module refuses to start"


async def test_required_module_that_cannot_start_fails_start_up(supervise: Start) -> None:
    with pytest.raises(ModuleStartFailed) as caught:
        await supervise(
            fake_module("good", policy="never"),
            fake_module("broken", args=("--crash-on-start", "3")),
        )
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("required module 'broken' could not start: exited with code 3")
    assert message.endswith("fake module refuses to start")
    assert caught.value.reason == "MODULE_START_FAILED"


async def test_missing_command_fails_start_up_naming_the_module(
    supervise: Start, tmp_path: Path
) -> None:
    missing = {"id": "ghost", "command": str(tmp_path / "no-such-binary")}
    with pytest.raises(ModuleStartFailed, match=r"'ghost' could not start: cannot run .*no-such"):
        await supervise(missing)


async def test_optional_module_that_cannot_start_does_not_fail_start_up(
    supervise: Start,
) -> None:
    supervisor, _ = await supervise(
        fake_module("fine"),
        fake_module("broken", policy="never", required=False, args=("--crash-on-start", "1")),
    )
    assert supervisor.status("fine").state is H.HEALTHY
    assert supervisor.status("broken").state is H.UNHEALTHY
    assert [t.name for t in supervisor.tools() if t.name.startswith("fine.")] == [
        "fine.block",
        "fine.echo",
        "fine.exit_soon",
        "fine.pid",
    ]


async def test_call_to_a_restarting_module_waits_for_it(supervise: Start) -> None:
    supervisor, _ = await supervise(
        fake_module(env={"FAKE_TAG": "env"}), backoff_initial=0.5, backoff_max=0.5
    )
    first = pid_of(supervisor)
    os.kill(first, signal.SIGKILL)
    await eventually(lambda: supervisor.status("fake").state is not H.HEALTHY, "noticed the kill")
    # Issued while the module is down: waits (bounded by restart_wait) for the restart.
    assert await supervisor.call_tool("fake.echo", {"text": "hi"}) == {"result": "env:hi"}
    assert supervisor.status("fake").pid != first


async def test_call_waits_only_as_long_as_restart_wait(supervise: Start) -> None:
    supervisor, _ = await supervise(
        fake_module(), backoff_initial=60.0, backoff_max=60.0, restart_wait=0.2
    )
    os.kill(pid_of(supervisor), signal.SIGKILL)
    await eventually(lambda: supervisor.status("fake").state is H.RESTARTING, "restarting")
    with pytest.raises(ModuleUnavailable, match=r"still restarting after 0.2s"):
        await supervisor.call_tool("fake.echo", {"text": "hi"})


async def test_module_killed_during_a_call_fails_the_call_cleanly(
    supervise: Start, tmp_path: Path
) -> None:
    supervisor, events = await supervise(fake_module())
    marker = tmp_path / "entered"
    call = asyncio.create_task(supervisor.call_tool("fake.block", {"marker": str(marker)}))
    await eventually(lambda: marker.exists() and marker.read_text() != "", "the call to start")
    os.kill(int(marker.read_text()), signal.SIGKILL)
    with pytest.raises(
        ModuleUnavailable, match=re.escape("stopped during the call to 'fake.block'")
    ):
        await call
    failed = [d for d in events.of("tool_called") if d["tool"] == "fake.block"]
    assert failed and failed[-1]["ok"] is False and failed[-1]["reason"] == "MODULE_UNAVAILABLE"
    await eventually(lambda: supervisor.status("fake").state is H.HEALTHY, "restarted")


async def test_tool_errors_and_unknown_tools(supervise: Start) -> None:
    supervisor, _ = await supervise(fake_module())
    with pytest.raises(ToolFailed, match=re.escape("fake.echo")):
        await supervisor.call_tool("fake.echo", {})  # missing argument: the tool refuses
    with pytest.raises(ToolNotFound, match=re.escape("offers fake.block, fake.echo")):
        await supervisor.call_tool("fake.nope", {})
    with pytest.raises(ToolNotFound, match="no module 'other'"):
        await supervisor.call_tool("other.echo", {})
    with pytest.raises(ToolNotFound, match=re.escape("<module>.<tool>")):
        await supervisor.call_tool("echo", {})


async def test_only_granted_tools_can_be_called(supervise: Start) -> None:
    supervisor, events = await supervise(fake_module())
    draft = AgentBuildDraft(external_tools=[ExternalToolDef("fake.echo", "")])
    call = supervisor.caller("alice", draft)
    assert await call("fake.echo", {"text": "ok"}) == {"result": "ok"}
    with pytest.raises(ToolNotGranted, match=re.escape("'alice' may not call tool 'fake.pid'")):
        await call("fake.pid", {})
    calls = [(i, d["tool"], d["ok"]) for k, i, d in events.items if k == "tool_called"]
    assert calls == [("alice", "fake.echo", True), ("alice", "fake.pid", False)]


async def test_module_that_never_answers_mcp_fails_start_up(supervise: Start) -> None:
    silent = {
        "id": "silent",
        "command": sys.executable,
        "args": ["-c", "import time; time.sleep(60)"],
    }
    with pytest.raises(
        ModuleStartFailed, match=r"'silent' could not start: no MCP handshake within 1s"
    ):
        await supervise(silent, start_timeout=1.0)
