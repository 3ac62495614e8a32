"""``mobkit up --split``: one process per provider, the runtime remote. Turns, and the
agents' peer messages and module tool calls, which come back over RunTurnStream."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import mobkit, wait_active

from mobkit.etcd.process import EtcdProcess

PROVIDERS = ("lease", "continuity", "roster", "topology", "customizer", "runtime")
TEAM = ("coordinator", "worker-1", "worker-2", "worker-3")  # the example roster
BANNER_END = "Ctrl-C stops"


def _banner(out: Path, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> str:
    """The banner `up` prints once everything serves (bounded; fails if `up` dies)."""
    deadline = time.monotonic() + timeout
    while BANNER_END not in (text := out.read_text(errors="replace")):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"mobkit up --split did not come up:\n{text}")
        time.sleep(0.1)
    return text


@pytest.fixture(scope="module")
def split_suite(
    etcd_session: EtcdProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """`mobkit up --split` on the session etcd; yields the banner's addresses by name."""
    tmp = tmp_path_factory.mktemp("split")
    out = tmp / "up.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOBKIT_")}
    cmd = [
        *(sys.executable, "-m", "mobkit.cli", "up", "--split"),
        *("--listen", "127.0.0.1:0", "--data-dir", str(tmp / "data")),
        *("--etcd-endpoints", etcd_session.endpoint),
        *("--etcd-prefix", f"/split-{uuid.uuid4().hex[:8]}", "--log-level", "WARNING"),
    ]
    with out.open("wb") as sink, (tmp / "up.err").open("wb") as err:
        # Its own session: whatever happens, the whole tree is stopped below.
        proc = subprocess.Popen(cmd, stdout=sink, stderr=err, env=env, start_new_session=True)
    try:
        banner = _banner(out, proc)
        addrs = dict(re.findall(r"^  (\w[\w +]*?)\s+: (\S+)$", banner, re.MULTILINE))
        wait_active(addrs["orchestrator"], TEAM, timeout=60)
        yield addrs | {"banner": banner}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def test_the_banner_shows_every_provider_address(split_suite: dict[str, str]) -> None:
    names = ("orchestrator", *(f"{p} service" for p in PROVIDERS))
    for name in names:
        assert re.fullmatch(r"127\.0\.0\.1:\d+", split_suite[name]), name
    assert len({split_suite[name] for name in names}) == 7
    assert "orchestrator + providers" not in split_suite["banner"]
    orchestrator, lease = split_suite["orchestrator"], split_suite["lease service"]
    assert f"mobkit leases --addr {orchestrator} --lease-addr {lease}" in split_suite["banner"]


def test_turns_run_in_the_remote_runtime(split_suite: dict[str, str]) -> None:
    run = mobkit("send", "coordinator", "remember the milk", "--addr", split_suite["orchestrator"])
    assert run.returncode == 0, run.stderr
    assert "the milk" in run.stdout


def test_peer_messages_and_tools_work_through_a_remote_runtime(
    split_suite: dict[str, str],
) -> None:
    orchestrator = split_suite["orchestrator"]
    asked = mobkit("send", "coordinator", "ask worker-1 hello", "--addr", orchestrator)
    assert asked.returncode == 0, asked.stderr
    assert "worker-1 said: [worker-1 turn " in asked.stdout  # the peer's own turn answered
    tool = mobkit("send", "coordinator", "tool clock.now {}", "--addr", orchestrator)
    assert tool.returncode == 0, tool.stderr
    assert "called clock.now: " in tool.stdout and '"label": "example"' in tool.stdout


@pytest.mark.parametrize(
    ("text", "reason", "code"),
    [("ask worker-2 hello", "TOPOLOGY_VIOLATION", 5), ("tool clock.now {}", "TOOL_NOT_GRANTED", 7)],
)
def test_refused_callbacks_through_a_remote_runtime_keep_their_reasons(
    split_suite: dict[str, str], text: str, reason: str, code: int
) -> None:
    """A worker may message only the coordinator, and no tool is granted to it."""
    orchestrator = split_suite["orchestrator"]
    run = mobkit("send", "worker-1", text, "--addr", orchestrator, "--json")
    assert f'"reason": "{reason}"' in run.stderr, run.stdout + run.stderr
    assert run.returncode == code, run.stderr  # refused or denied, not INTERNAL (1)
    # The failed turn left no trace: the next one runs on the checkpointed state.
    after = mobkit("send", "worker-1", "recall", "--addr", orchestrator)
    assert after.returncode == 0, after.stderr


def test_leases_says_where_the_lease_service_is_and_reaches_it(
    split_suite: dict[str, str],
) -> None:
    orchestrator, lease = split_suite["orchestrator"], split_suite["lease service"]
    lost = mobkit("leases", "--addr", orchestrator)
    assert lost.returncode == 2 and lost.stdout == ""
    assert lost.stderr.splitlines() == [
        f"mobkit leases: {orchestrator} serves no LeaseService: give the lease service's "
        "address with --lease-addr HOST:PORT (or MOBKIT_LEASE_ADDR; `mobkit up --split` "
        "prints it as `lease service`)"
    ]
    for run in (
        mobkit("leases", "--addr", orchestrator, "--lease-addr", lease),
        mobkit("leases", "--addr", orchestrator, env={"MOBKIT_LEASE_ADDR": lease}),
    ):
        assert run.returncode == 0, run.stderr
        assert sorted(line.split()[0] for line in run.stdout.splitlines()[1:-1]) == list(TEAM)
        assert run.stdout.splitlines()[-1] == "4 leases"
