"""A graceful stop is quiet: ``mobkit serve all`` stopped by SIGTERM exits 0 and logs
nothing at WARNING or worse on its way down (each service stops before those it
uses, so no loop sees its backend vanish under it)."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
from cli_support import wait_active

from mobkit.testing.suite import suite_process, write_roster

pytestmark = pytest.mark.timeout(120)


def test_sigterm_stops_every_service_without_a_warning(tmp_path: Path, etcd_session: Any) -> None:
    team = ["ann", "ben"]
    roster = write_roster(tmp_path / "roster.toml", team)
    proc = suite_process(
        tmp_path,
        etcd_session.endpoint,
        roster,
        prefix=f"/quiet-{uuid.uuid4().hex[:8]}",
        extra=["--log-level", "INFO", "--log-format", "json"],
    )
    with proc:
        assert proc.address is not None
        wait_active(proc.address, team)
        mark = proc.log_path.stat().st_size
        proc.signal(signal.SIGTERM)
        assert proc.proc is not None and proc.proc.wait(30) == 0, proc.log_tail()
    stopping = proc.log_path.read_bytes()[mark:].decode(errors="replace").splitlines()
    records = [json.loads(line) for line in stopping if line.startswith("{")]
    loud = [r for r in records if r["level"] in ("WARNING", "ERROR", "CRITICAL")]
    assert loud == [], loud
