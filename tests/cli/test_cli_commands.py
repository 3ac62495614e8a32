"""``mobkit`` client commands as subprocesses against a running suite: output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cli_support import TEAM, mobkit

from mobkit.etcd.process import free_ports
from mobkit.testing.processes import ServeProcess


def addr(suite: ServeProcess) -> list[str]:
    assert suite.address is not None
    return ["--addr", suite.address]


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_status_prints_a_table_of_identities(suite: ServeProcess) -> None:
    run = mobkit("status", *addr(suite))
    assert run.returncode == 0, run.stderr
    header, *rows, footer = run.stdout.splitlines()
    assert header.split() == ["IDENTITY", "STATE", "OWNER", "TOKEN", "VERSION", "LEASE", "TTL"]
    assert [r.split()[0] for r in rows] == sorted(TEAM)
    for row in rows:
        _, state, owner, token, version, ttl = row.split()
        assert state == "active" and owner.startswith("suite")
        assert int(token) > 0 and int(version) >= 0 and ttl.endswith("s")
    assert footer == f"{len(TEAM)} identities ({len(TEAM)} active)"


def test_status_json_filters_and_options_before_the_command(suite: ServeProcess) -> None:
    everyone = mobkit("status", "--json", *addr(suite))
    assert everyone.returncode == 0, everyone.stderr
    statuses = json.loads(everyone.stdout)
    assert [s["identity"] for s in statuses] == sorted(TEAM)
    assert {"state", "owner", "lease", "checkpoint_version", "generation"} <= set(statuses[0])
    assert statuses[0]["lease"]["fencing_token"] > 0

    none = mobkit("status", "--json", "--state", "broken", *addr(suite))
    assert json.loads(none.stdout) == []
    by_label = mobkit("status", "--json", "--label", "team=nobody", *addr(suite))
    assert json.loads(by_label.stdout) == []

    one = mobkit(*addr(suite), "--json", "status", "alice")  # global options first
    assert one.returncode == 0, one.stderr
    assert [s["identity"] for s in json.loads(one.stdout)] == ["alice"]


def test_address_comes_from_the_environment(suite: ServeProcess) -> None:
    assert suite.address is not None
    run = mobkit("status", "bob", env={"MOBKIT_ADDR": suite.address})
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[1].split()[:2] == ["bob", "active"]


def test_send_prints_the_output_and_a_key_makes_it_idempotent(suite: ServeProcess) -> None:
    run = mobkit("send", "alice", "remember the milk", *addr(suite))
    assert run.returncode == 0, run.stderr
    assert "the milk" in run.stdout
    assert one_line(run.stderr).startswith("alice: session ")

    first = mobkit("send", "alice", "note the key", "--key", "cli-k1", "--json", *addr(suite))
    again = mobkit("send", "alice", "note the key", "--key", "cli-k1", "--json", *addr(suite))
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    receipt = json.loads(first.stdout)
    assert json.loads(again.stdout) == receipt
    assert receipt["identity"] == "alice" and receipt["fencing_token"] > 0


def test_send_to_an_internal_identity_fails_in_one_line(suite: ServeProcess) -> None:
    run = mobkit("send", "erin", "hi", *addr(suite))
    assert run.returncode == 5
    assert run.stdout == ""
    assert (
        one_line(run.stderr)
        == "mobkit send: NOT_ADDRESSABLE: agent 'erin' is internal-only: use Dispatch, not Send"
    )

    scripted = mobkit("send", "erin", "hi", "--json", *addr(suite))
    assert scripted.returncode == 5
    error = json.loads(one_line(scripted.stderr))["error"]
    assert error["reason"] == "NOT_ADDRESSABLE"
    assert error["domain"] == "mobkit.dev"
    assert error["metadata"] == {"identity": "erin"}
    assert error["exit_code"] == 5


def test_dispatch_reaches_an_internal_identity(suite: ServeProcess) -> None:
    run = mobkit("dispatch", "erin", "hello", "--origin", "scheduler", "--json", *addr(suite))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["identity"] == "erin"


@pytest.mark.parametrize(
    ("args", "code", "reason"),
    [
        (["status", "zed"], 4, "IDENTITY_NOT_FOUND"),
        (["send", "zed", "hi"], 4, "IDENTITY_NOT_FOUND"),
        (["status", "not valid"], 3, "INVALID_IDENTITY"),
        (["resume", "bob"], 5, "INVALID_TRANSITION"),
        (["events", "--after", str(10**15)], 5, "STALE_EVENT_CURSOR"),
    ],
)
def test_errors_have_their_reason_and_exit_code(
    suite: ServeProcess, args: list[str], code: int, reason: str
) -> None:
    run = mobkit(*args, *addr(suite))
    assert run.returncode == code
    assert one_line(run.stderr).startswith(f"mobkit {args[0]}: {reason}: ")


def test_an_unreachable_server_is_exit_code_6() -> None:
    [port] = free_ports(1)
    run = mobkit("status", "--addr", f"127.0.0.1:{port}", "--timeout", "2", "--retries", "0")
    assert run.returncode == 6
    assert one_line(run.stderr).startswith(
        f"mobkit status: UNAVAILABLE: no answer from 127.0.0.1:{port}"
    )


def test_usage_errors_are_exit_code_2() -> None:
    assert mobkit("send", "alice").returncode == 2  # TEXT missing
    assert mobkit("status", "--state", "sleepy").returncode == 2
    assert mobkit("status", "--label", "novalue").returncode == 2


def test_events_lists_from_a_cursor(suite: ServeProcess) -> None:
    run = mobkit("events", "--json", *addr(suite))
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    cursors = [e["cursor"] for e in events]
    assert cursors == sorted(set(cursors)) and len(cursors) >= len(TEAM)
    assert {e["agent_identity"] for e in events if e["kind"] == "activated"} == set(TEAM)

    after = mobkit("events", "--after", str(cursors[1]), "--limit", "2", *addr(suite))
    assert after.returncode == 0, after.stderr
    assert [int(line.split()[0]) for line in after.stdout.splitlines()] == cursors[2:4]


def test_events_follow_sees_a_lifecycle_change(suite: ServeProcess) -> None:
    latest = json.loads(mobkit("events", "--json", *addr(suite)).stdout.splitlines()[-1])["cursor"]
    follow = subprocess.Popen(
        [
            *(sys.executable, "-m", "mobkit.cli", "events", "--follow", "--json"),
            *("--after", str(latest), "--limit", "1", *addr(suite)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        suspended = mobkit("suspend", "carol", *addr(suite))
        assert suspended.returncode == 0, suspended.stderr
        assert suspended.stdout.startswith("carol: suspended")
        out, err = follow.communicate(timeout=60)
    finally:
        follow.kill()
    assert follow.returncode == 0, err
    [event] = [json.loads(line) for line in out.splitlines()]
    assert (event["kind"], event["agent_identity"]) == ("suspended", "carol")
    assert event["cursor"] > latest

    resumed = mobkit("resume", "carol", *addr(suite))
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith("carol: active")


def test_reset_and_retire(suite: ServeProcess) -> None:
    before = json.loads(mobkit("status", "dave", "--json", *addr(suite)).stdout)[0]
    reset = mobkit("reset", "dave", "--json", *addr(suite))
    assert reset.returncode == 0, reset.stderr
    assert json.loads(reset.stdout)["generation"] == before["generation"] + 1

    retired = mobkit("retire", "dave", *addr(suite))
    assert retired.returncode == 0, retired.stderr
    assert retired.stdout.startswith("dave: ")


def test_reconcile_reports_progress_and_a_summary(suite: ServeProcess) -> None:
    run = mobkit("reconcile", *addr(suite))
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("reconciled roster revision ")
    assert "failed" in run.stdout
    assert any(line.startswith("reconciling: ") for line in run.stderr.splitlines()), run.stderr

    scripted = mobkit("reconcile", "--json", *addr(suite))
    assert scripted.returncode == 0, scripted.stderr
    report = json.loads(scripted.stdout)
    assert report["failed"] == [] and report["roster_revision"] > 0
    assert scripted.stderr == ""


def test_leases_and_topology(suite: ServeProcess) -> None:
    assert suite.address is not None
    run = mobkit("leases", *addr(suite), "--lease-addr", suite.address)
    assert run.returncode == 0, run.stderr
    header, *rows, footer = run.stdout.splitlines()
    assert header.split() == ["IDENTITY", "HOLDER", "TOKEN", "TTL"]
    held = {r.split()[0] for r in rows}
    assert {"alice", "bob", "erin"} <= held
    assert footer == f"{len(rows)} leases"

    leases = json.loads(mobkit("leases", "--json", *addr(suite)).stdout)
    assert {x["identity"] for x in leases} == held

    edges = json.loads(mobkit("topology", "--json", "--identity", "alice", *addr(suite)).stdout)
    assert edges and all("alice" in (e["a"], e["b"]) for e in edges)


def test_help_documents_the_exit_codes() -> None:
    run = mobkit("--help")
    assert run.returncode == 0
    assert "exit codes" in run.stdout and "NOT_ADDRESSABLE" in run.stdout
