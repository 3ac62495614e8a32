"""The Node.js client's example against a running suite: send, follow events, decode errors,
and free-form JSON read exactly (integers beyond 2^53 as BigInt)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from json_support import same

from mobkit.client import MobKit, MobKitError
from mobkit.core.types import IdentityLifecycleState
from mobkit.etcd.process import EtcdProcess
from mobkit.testing.processes import ServeProcess
from mobkit.testing.suite import suite_process, write_roster

NODE, NPM = shutil.which("node"), shutil.which("npm")
CLIENT = Path(__file__).resolve().parents[2] / "clients" / "node"
EXAMPLE = CLIENT / "examples" / "send-and-follow.js"
TEAM = ("alice", "bob", "erin")
# No 3.0: a JavaScript number cannot tell it from 3, so the client gives it back as 3.
CAROL_CONTEXT = {
    "budget": 3,
    "ratio": 0.5,
    "big": 2**64 + 1,
    "neg": -(2**53 + 1),
    "tags": ["a", True, [[]], {}],
    "__proto__": {"polluted": "no"},
}
CAROL = f"""
[[agents]]
identity = "carol"
profile = "notebook"
context = {{ budget = 3, ratio = 0.5, big = {2**64 + 1}, neg = {-(2**53 + 1)}, \
tags = ["a", true, [[]], {{}}], "__proto__" = {{ polluted = "no" }} }}
"""

pytestmark = [
    pytest.mark.skipif(
        NODE is None or NPM is None, reason="node and npm are not installed: no Node client run"
    ),
    pytest.mark.timeout(300),  # npm install
]


@pytest.fixture(scope="module")
def suite(
    etcd_session: EtcdProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("node-suite")
    roster = write_roster(tmp / "roster.toml", TEAM, internal=["erin"])
    roster.write_text(roster.read_text() + CAROL)  # before the suite starts: no watcher yet
    with suite_process(
        tmp, etcd_session.endpoint, roster, prefix=f"/node-{uuid.uuid4().hex[:8]}"
    ) as proc:
        assert proc.address is not None
        deadline = time.monotonic() + 30
        with MobKit(proc.address, timeout=5) as mk:
            while True:
                try:
                    states = [s.state for s in mk.list_statuses()]
                    if len(states) == len(TEAM) + 1 and all(
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


def test_example_prints_the_structured_output_exactly(installed: Path, suite: ServeProcess) -> None:
    """The notebook answers its app context (carol's roster context) as structured output;
    the client reads it from the exact text field and prints it back as JSON."""
    assert suite.address is not None
    run = example(suite.address, "carol", "context", "--events", "0")
    assert run.returncode == 0, run.stderr
    (structured,) = [line for line in run.stdout.splitlines() if line.startswith("structured ")]
    assert same(json.loads(structured.removeprefix("structured ")), CAROL_CONTEXT)


def test_parse_json_keeps_big_integers_and_refuses_bad_text() -> None:
    assert NODE is not None
    text = '{"a":18446744073709551617,"b":[1,2.5,-9007199254740993,"\\u00e9"],"__proto__":{"x":1}}'
    script = f"""
    const {{ parseJson, stringifyJson }} = require("./json.js");
    const value = parseJson({json.dumps(text)});
    const bad = ["[1,]", "NaN", "1e400", "[".repeat(200) + "]".repeat(200)].filter((t) => {{
      try {{ parseJson(t); return true; }} catch (e) {{ return false; }}
    }});
    console.log(JSON.stringify({{
      big: typeof value.a, proto: Object.getPrototypeOf(value) === Object.prototype,
      text: stringifyJson(value), accepted: bad,
    }}));
    """
    run = subprocess.run(
        [NODE, "-e", script], cwd=CLIENT, capture_output=True, text=True, timeout=30, check=False
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["big"] == "bigint" and out["proto"] is True and out["accepted"] == []
    assert same(json.loads(out["text"]), json.loads(text))


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
