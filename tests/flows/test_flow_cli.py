"""``mobkit flows``, ``run``, ``runs`` and ``cancel`` as a user types them, against a
real suite process; mistakes are one line with their documented exit code."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from cli_support import mobkit, wait_active
from test_flow_service import ROSTER

from mobkit.etcd.process import EtcdProcess
from mobkit.testing.processes import ServeProcess
from mobkit.testing.suite import suite_process


@pytest.fixture(scope="module")
def suite(
    etcd_session: EtcdProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("flow-cli")
    roster = tmp / "roster.toml"
    roster.write_text(ROSTER)
    proc = suite_process(tmp, etcd_session.endpoint, roster, prefix=f"/fcli-{uuid.uuid4().hex[:8]}")
    with proc:
        assert proc.address is not None
        wait_active(proc.address, ["lead", "w1", "w2", "w3"])
        yield proc


def test_flows_lists_each_flow_and_its_steps(suite: ServeProcess) -> None:
    out = mobkit("flows", "--addr", str(suite.address))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:4] == [
        "ask",
        "  frame: lead",
        "  answer: each of role=worker (at least 3) after frame",
        "  sum: lead after answer",
    ]


def test_run_follow_prints_events_then_the_outputs(suite: ServeProcess) -> None:
    out = mobkit("run", "ask", "--input", '{"q": "why"}', "--follow", "--addr", str(suite.address))
    assert out.returncode == 0, out.stderr
    assert "run_started" in out.stderr and "run_succeeded" in out.stderr
    assert "succeeded" in out.stdout.splitlines()[1]
    assert "  answer w1: answer: why" in out.stdout.splitlines()


def test_a_failing_run_exits_1_with_its_reason(suite: ServeProcess) -> None:
    out = mobkit("run", "crowd", "--follow", "--addr", str(suite.address))
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1].endswith(
        "failed: INSUFFICIENT_TARGETS: insufficient targets for step 'all': required 4, available 3"
    )


def test_runs_filters_and_json(suite: ServeProcess) -> None:
    mobkit("run", "strict", "--input", '"x"', "--follow", "--addr", str(suite.address))
    out = mobkit(
        "runs", "--flow", "strict", "--state", "failed", "--json", "--addr", str(suite.address)
    )
    assert out.returncode == 0, out.stderr
    runs = json.loads(out.stdout)
    assert runs and {r["run"]["flow_id"] for r in runs} == {"strict"}
    assert {r["run"]["failure"]["reason"] for r in runs} == {"SCHEMA_VALIDATION"}


def test_cancel_of_a_finished_run_says_so(suite: ServeProcess) -> None:
    started = mobkit(
        "run", "strict", "--input", '"x"', "--follow", "--json", "--addr", str(suite.address)
    )
    run_id = json.loads(started.stdout.splitlines()[-1])["run"]["run_id"]
    out = mobkit("cancel", run_id, "--addr", str(suite.address))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"run {run_id} already failed"


@pytest.mark.parametrize(
    ("args", "code", "reason"),
    [
        (["run", "no-such-flow"], 4, "FLOW_NOT_FOUND"),
        (["cancel", "no-such-run"], 4, "RUN_NOT_FOUND"),
        (["run", "ask", "--input", '{"x": 1}'], 3, "INVALID_ARGUMENT"),
    ],
)
def test_mistakes_are_one_line_with_their_exit_code(
    suite: ServeProcess, args: list[str], code: int, reason: str
) -> None:
    out = mobkit(*args, "--addr", str(suite.address))
    assert out.returncode == code, (out.stdout, out.stderr)
    assert len(out.stderr.strip().splitlines()) == 1 and reason in out.stderr


def test_input_that_is_not_json_is_a_usage_error(suite: ServeProcess) -> None:
    out = mobkit("run", "ask", "--input", "{nope", "--addr", str(suite.address))
    assert out.returncode == 2
    assert out.stderr.startswith("--input is not JSON")
