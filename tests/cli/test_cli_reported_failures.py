"""Nothing fails silently: a rejected hot reload and an identity that cannot be activated
show in ``mobkit status``, ``mobkit reconcile`` (output and exit code), the event log and
the server log, on a real suite (``mobkit serve all`` on etcd and SQLite)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import mobkit, wait_active

from mobkit.client import MobKit
from mobkit.etcd.process import EtcdProcess
from mobkit.testing.processes import ServeProcess
from mobkit.testing.suite import suite_process

GOOD = """
[profiles]
worker = "notebook"

[[agents]]
identity = "alice"
profile = "worker"

[[agents]]
identity = "bob"
profile = "worker"
"""
# A typo'd agent kind and a duplicate identity: both must be reported.
BAD = GOOD.replace('worker = "notebook"', 'worker = "notebook"\nhelper = "notebok"') + (
    '\n[[agents]]\nidentity = "carol"\nprofile = "helper"\n'
    '\n[[agents]]\nidentity = "alice"\nprofile = "worker"\n'
)
PROBLEMS = [
    "[profiles.helper]: unknown agent kind 'notebok' (the runtime offers: echo, llm, notebook)",
    "[agents[3]] [identity]: duplicate identity 'alice' (first used by agents[0])",
]


def write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # atomic: the roster provider never reads half a file


def until(check: Callable[[], Any], what: str, timeout: float = 40.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.1)
    return result


def events(address: str, kind: str) -> list[dict[str, Any]]:
    run = mobkit("events", "--json", "--addr", address)
    assert run.returncode == 0, run.stderr
    found = [json.loads(line) for line in run.stdout.splitlines()]
    return [e for e in found if e["kind"] == kind]


@pytest.fixture
def suite(tmp_path: Path, etcd_session: EtcdProcess) -> Iterator[tuple[ServeProcess, Path]]:
    roster = tmp_path / "roster.toml"
    write(roster, GOOD)
    proc = suite_process(
        tmp_path, etcd_session.endpoint, roster, prefix=f"/rf-{uuid.uuid4().hex[:8]}"
    )
    with proc:
        assert proc.address is not None
        wait_active(proc.address, ["alice", "bob"])
        yield proc, roster


def test_a_rejected_hot_reload_keeps_the_roster_and_says_so_everywhere(
    suite: tuple[ServeProcess, Path],
) -> None:
    proc, roster = suite
    address = proc.address or ""
    before = json.loads(mobkit("reconcile", "--json", "--addr", address).stdout)
    assert before["roster_problem"] is None

    write(roster, BAD)
    with MobKit(address, timeout=5) as mk:
        problem = until(lambda: mk.list_statuses_page().roster_problem, "the rejection")
    assert problem.lines() == PROBLEMS

    status = mobkit("status", "--addr", address)
    assert status.returncode == 0, status.stderr
    assert status.stderr.splitlines() == [
        f"warning: roster rejected, the last valid roster stays in force: {line}"
        for line in PROBLEMS
    ]
    rows = [line.split()[:2] for line in status.stdout.splitlines()[1:3]]
    assert rows == [["alice", "active"], ["bob", "active"]]  # the previous roster rules
    assert "carol" not in status.stdout

    reconcile = mobkit("reconcile", "--addr", address)
    assert reconcile.returncode == 3, reconcile.stdout + reconcile.stderr
    revision = before["roster_revision"]
    assert reconcile.stdout.splitlines()[-2:] == [
        f"  roster rejected (revision {revision} stays): {line}" for line in PROBLEMS
    ]
    scripted = mobkit("reconcile", "--json", "--addr", address)
    assert scripted.returncode == 3
    report = json.loads(scripted.stdout)
    assert report["roster_revision"] == revision
    assert [(p["entry"], p["field"]) for p in report["roster_problem"]["problems"]] == [
        (None, "profiles.helper"),
        ("agents[3]", "identity"),
    ]
    [rejected] = until(lambda: events(address, "roster_rejected"), "a roster_rejected event")
    assert rejected["data"]["problems"] == PROBLEMS
    assert rejected["data"]["roster_revision"] == str(revision)

    # Fixed: the new roster is reconciled, and nothing warns any more.
    write(roster, GOOD + '\n[[agents]]\nidentity = "carol"\nprofile = "worker"\n')
    wait_active(address, ["alice", "bob", "carol"])
    fixed = mobkit("reconcile", "--addr", address)
    assert fixed.returncode == 0 and "roster rejected" not in fixed.stdout
    assert "warning" not in mobkit("status", "--addr", address).stderr


def test_an_identity_that_cannot_be_activated_says_why(
    tmp_path: Path, etcd_session: EtcdProcess
) -> None:
    # The config claims the runtime offers "ghost": the roster is accepted, and the
    # runtime refuses the profile when the identity is activated.
    config = tmp_path / "mobkit.toml"
    config.write_text('[roster]\nagent_kinds = ["notebook", "ghost"]\n')
    roster = tmp_path / "roster.toml"
    helper = GOOD.replace('worker = "notebook"', 'worker = "notebook"\nhelper = "ghost"')
    write(roster, helper + '\n[[agents]]\nidentity = "hal"\nprofile = "helper"\n')
    proc = suite_process(
        tmp_path,
        etcd_session.endpoint,
        roster,
        prefix=f"/rf-{uuid.uuid4().hex[:8]}",
        extra=["--config", str(config)],
    )
    with proc:
        address = proc.address or ""
        wait_active(address, ["alice", "bob"])
        with MobKit(address, timeout=5) as mk:
            status = until(lambda: (s := mk.status("hal")).activation_failure and s, "a failure")
        assert status.state.value == "dormant" and status.failure is None
        why = "invalid profile: unknown profile 'ghost' (known: echo, llm, notebook)"
        assert (status.activation_failure.reason, status.activation_failure.message) == (
            "INVALID_ARGUMENT",
            why,
        )

        scripted = mobkit("status", "hal", "--json", "--addr", address)
        [shown] = json.loads(scripted.stdout)
        assert shown["state"] == "dormant"
        assert shown["activation_failure"]["reason"] == "INVALID_ARGUMENT"
        assert shown["activation_failure"]["message"] == why
        table = mobkit("status", "--addr", address)
        assert f"  hal: cannot be activated: INVALID_ARGUMENT: {why}" in table.stdout.splitlines()

        # Every reconcile tries again and lists it; the same failure is reported once.
        again = mobkit("reconcile", "--addr", address)
        assert again.returncode == 8
        assert f"  failed: hal: INVALID_ARGUMENT: {why}" in again.stdout.splitlines()
        turn = mobkit("send", "alice", "marker", "--addr", address)
        assert turn.returncode == 0, turn.stderr
        until(lambda: events(address, "turn_completed"), "the marker turn's event")
        failed = events(address, "activation_failed")  # queued before the marker: landed
        assert [(e["agent_identity"], e["data"]) for e in failed] == [
            ("hal", {"reason": "INVALID_ARGUMENT", "message": why})
        ]
        logged = until(
            lambda: [x for x in proc.log_tail(200_000).splitlines() if "cannot be activated" in x],
            "the log line",
        )
        assert (
            len(logged) == 1 and f"hal: cannot be activated: INVALID_ARGUMENT: {why}" in (logged[0])
        )
