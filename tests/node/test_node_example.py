"""The Node.js client's example against a running suite: send, follow events, decode errors."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mobkit.client import MobKit, MobKitError
from mobkit.core.types import IdentityLifecycleState
from mobkit.etcd.process import EtcdProcess
from mobkit.testing.processes import ServeProcess
from mobkit.testing.suite import suite_process, write_roster

NODE, NPM = shutil.which("node"), shutil.which("npm")
CLIENT = Path(__file__).resolve().parents[2] / "clients" / "node"
EXAMPLE = CLIENT / "examples" / "send-and-follow.js"
TEAM = ("alice", "bob", "erin")

pytestmark = [
    pytest.mark.skipif(
        NODE is None or NPM is None, reason="node and npm are not installed: no Node client run"
    ),
    pytest.mark.timeout(300),  # npm install
]


@pytest.fixture(scope="module")
def installed() -> Path:
    assert NPM is not None
    run = subprocess.run(
        [NPM, "install", "--no-audit", "--no-fund", "--prefer-offline"],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, f"npm install failed:\n{run.stdout}\n{run.stderr}"
    return CLIENT


@pytest.fixture(scope="module")
def suite(
    etcd_session: EtcdProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("node-suite")
    roster = write_roster(tmp / "roster.toml", TEAM, internal=["erin"])
    with suite_process(
        tmp, etcd_session.endpoint, roster, prefix=f"/node-{uuid.uuid4().hex[:8]}"
    ) as proc:
        assert proc.address is not None
        deadline = time.monotonic() + 30
        with MobKit(proc.address, timeout=5) as mk:
            while True:
                try:
                    states = [s.state for s in mk.list_statuses()]
                    if len(states) == len(TEAM) and all(
                        s is IdentityLifecycleState.ACTIVE for s in states
                    ):
                        break
                except MobKitError:
                    pass
                assert time.monotonic() < deadline, "the suite never activated its roster"
                time.sleep(0.1)
        yield proc


def example(*args: str) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    return subprocess.run(
        [NODE, str(EXAMPLE), *args],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_example_sends_then_follows_events(installed: Path, suite: ServeProcess) -> None:
    assert suite.address is not None
    run = example(suite.address, "alice", "remember the milk", "--events", "3")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("receipt identity=alice session=sess-")
    assert "checkpoint=1" in lines[0]
    assert lines[1].startswith("output ") and "the milk" in lines[1]
    events = [line.split() for line in lines if line.startswith("event ")]
    assert len(events) == 3
    cursors = [int(e[1]) for e in events]
    assert cursors == sorted(set(cursors))
    assert lines[-1] == "done: 3 events"


def test_example_decodes_error_info(installed: Path, suite: ServeProcess) -> None:
    assert suite.address is not None
    run = example(suite.address, "erin", "hi", "--events", "1")
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr.startswith("send-and-follow: NOT_ADDRESSABLE: agent 'erin' is internal-only")
    assert "code FAILED_PRECONDITION, domain mobkit.dev" in run.stderr
    assert '{"identity":"erin"}' in run.stderr

    missing = example(suite.address, "zed", "hi")
    assert missing.returncode == 1
    assert "IDENTITY_NOT_FOUND" in missing.stderr and '{"identity":"zed"}' in missing.stderr
