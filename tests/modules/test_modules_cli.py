"""`mobkit modules` against a running suite whose config runs the example clock module."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from mobkit.testing.processes import ServeProcess
from mobkit.testing.suite import write_roster


def test_modules_command_lists_the_clock(tmp_path: Path, etcd_session: Any) -> None:
    config = tmp_path / "mobkit.toml"
    config.write_text(
        '[modules]\nnamespace = "t"\n'
        '[[modules.module]]\nid = "clock"\npython_module = "mobkit.examples_modules.clock"\n'
        'restart_policy = "on_failure"\n'
    )
    roster = write_roster(tmp_path / "roster.toml", ["solo"])
    args = [
        "--etcd-endpoints",
        etcd_session.endpoint,
        "--etcd-prefix",
        f"/mod-{uuid.uuid4().hex[:6]}",
        "--roster",
        str(roster),
        "--data-dir",
        str(tmp_path / "d"),
        "--config",
        str(config),
        "--log-level",
        "WARNING",
    ]
    with ServeProcess("all", args, log_dir=tmp_path) as proc:
        cmd = [sys.executable, "-m", "mobkit.cli", "modules", "--addr", proc.address or ""]
        human = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert human.returncode == 0, human.stderr
        assert "clock" in human.stdout and "healthy" in human.stdout
        assert "clock.now" in human.stdout
        machine = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=60)
        assert machine.returncode == 0, machine.stderr
        [module] = json.loads(machine.stdout)
        assert module["config"]["id"] == "clock" and module["state"] == "healthy"
