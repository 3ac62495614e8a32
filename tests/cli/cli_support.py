"""Run ``mobkit`` as a subprocess, and a real suite for it to talk to."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from mobkit.client import MobKit, MobKitError
from mobkit.core.types import IdentityLifecycleState
from mobkit.testing.processes import ServeProcess
from mobkit.testing.suite import suite_process, write_roster

TEAM = ("alice", "bob", "carol", "dave", "erin")
INTERNAL = ("erin",)


def mobkit(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``mobkit ARGS`` (as ``python -m mobkit.cli``), output captured as text."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MOBKIT_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mobkit.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def wait_active(address: str, identities: Sequence[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with MobKit(address, timeout=5) as mk:
        while True:
            try:
                states = {str(s.identity): s.state for s in mk.list_statuses()}
                if all(states.get(i) is IdentityLifecycleState.ACTIVE for i in identities):
                    return
            except MobKitError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{sorted(identities)} never all became active")
            time.sleep(0.1)


@contextmanager
def running_suite(tmp: Path, etcd_endpoint: str) -> Iterator[ServeProcess]:
    roster = write_roster(tmp / "roster.toml", TEAM, internal=INTERNAL)
    proc = suite_process(tmp, etcd_endpoint, roster, prefix=f"/cli-{uuid.uuid4().hex[:8]}")
    with proc:
        assert proc.address is not None
        wait_active(proc.address, TEAM)
        yield proc


def cli_commands() -> dict[str, argparse.ArgumentParser]:
    """Every parser of the real ``mobkit`` CLI by command path ("" for the top level,
    "etcd compact", ...)."""
    from mobkit.cli import _parser

    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        found[path] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{path} {name}".strip())

    walk(_parser(), "")
    return found


def option_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's flags and positionals, without -h and subcommands."""
    return [
        a
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
    ]
