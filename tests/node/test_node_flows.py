"""The Node client's flows against a running suite: start a run, follow its events to the
end, read its outputs and failures, and decode the flow reasons."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "flows"))
from cli_support import wait_active
from test_flow_service import ROSTER

from mobkit.etcd.process import EtcdProcess
from mobkit.testing.processes import ServeProcess
from mobkit.testing.suite import suite_process

NODE = shutil.which("node")
CLIENT = Path(__file__).resolve().parents[2] / "clients" / "node"
EXAMPLE = CLIENT / "examples" / "run-flow.js"

pytestmark = [
    pytest.mark.skipif(
        NODE is None or shutil.which("npm") is None,
        reason="node and npm are not installed: no Node client run",
    ),
    pytest.mark.timeout(300),
]


@pytest.fixture(scope="module")
def suite(
    etcd_session: EtcdProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("node-flows")
    roster = tmp / "roster.toml"
    roster.write_text(ROSTER)
    proc = suite_process(
        tmp, etcd_session.endpoint, roster, prefix=f"/nflow-{uuid.uuid4().hex[:8]}"
    )
    with proc:
        assert proc.address is not None
        wait_active(proc.address, ["lead", "w1", "w2", "w3"])
        yield proc


def example(*args: str) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    return subprocess.run(
        [NODE, str(EXAMPLE), *args],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_a_run_followed_from_node_ends_with_its_outputs(
    installed: Path, suite: ServeProcess
) -> None:
    run = example(str(suite.address), "ask", '{"q": "why"}', "--request-id", "node-1")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    kinds = [line.split()[2] for line in lines if line.startswith("event ")]
    assert kinds[0] == "run_started" and kinds[-1] == "run_succeeded"
    assert next(line for line in lines if line.startswith("run ")).endswith(" RUN_STATE_SUCCEEDED")
    assert "output answer w2 answer: why" in lines
    again = example(str(suite.address), "ask", '{"q": "why"}', "--request-id", "node-1")
    first_id = next(line for line in lines if line.startswith("run ")).split()[1]
    assert f"run {first_id} RUN_STATE_SUCCEEDED" in again.stdout.splitlines()


def test_failures_and_reasons_reach_node(installed: Path, suite: ServeProcess) -> None:
    failed = example(str(suite.address), "crowd")
    assert failed.returncode == 1
    assert failed.stdout.splitlines()[-1] == (
        "failure INSUFFICIENT_TARGETS: insufficient targets for step 'all': required 4, available 3"
    )
    missing = example(str(suite.address), "no-such-flow")
    assert missing.returncode == 1
    assert missing.stderr.startswith(
        "run-flow: FLOW_NOT_FOUND: flow 'no-such-flow' is not in the roster"
    )


def test_streamed_turns_and_tickets_from_node(installed: Path, suite: ServeProcess) -> None:
    assert NODE is not None
    script = f"""
    const {{ MobKitClient }} = require("./index.js");
    (async () => {{
      const client = new MobKitClient({json.dumps(str(suite.address))});
      try {{
        const items = [];
        for await (const item of client.sendStream("lead", "remember node", {{ idempotencyKey: "n-1" }})) items.push(item);
        const ticket = await client.submitTurn("w3", "hi", {{ dispatch: true, idempotencyKey: "n-2" }});
        let done = null;
        for await (const item of client.watchTurn(ticket.turn_id)) if (item.turn) done = item.turn;
        const again = await client.getTurn(ticket.turn_id);
        console.log(JSON.stringify({{
          last: items[items.length - 1].receipt.output, count: items.length,
          state: done.state, output: done.receipt.output, same: again.turn_id === done.turn_id,
        }}));
      }} finally {{ client.close(); }}
    }})().catch((e) => {{ console.error(e.reason || e.message); process.exit(1); }});
    """
    run = subprocess.run(
        [NODE, "-e", script], cwd=CLIENT, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert "noted 'node'" in out["last"] and out["count"] == 1
    assert out["state"] == "TURN_STATE_SUCCEEDED" and out["output"] == "hi" and out["same"]
