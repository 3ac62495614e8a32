"""``mobkit up`` serves the console beside the suite; without tokens it is open (every
action offered), and an action still needs the console's header (no cross-site form)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mobkit.testing.processes import UpProcess

CONSOLE_AT = re.compile(r"console at (\S+)")


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())


def _post(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=b"{}", method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_up_serves_an_open_console_over_its_own_orchestrator(tmp_path: Path) -> None:
    with UpProcess(["--data-dir", str(tmp_path / "data")], log_dir=tmp_path) as up:
        found = CONSOLE_AT.search(up.log_tail())
        assert found, up.log_tail()
        url = found.group(1)
        session = _get(url + "api/session")
        assert session["open"] is True and "suspend" in session["actions"]
        fleet = _get(url + "api/fleet")
        names = [s["identity"] for s in fleet["identities"]]
        assert names == ["coordinator", "worker-1", "worker-2", "worker-3"]
        assert sum(fleet["counts"].values()) == 4 and "suspended" in fleet["counts"]
        status, body = _post(url + "api/identities/worker-1/suspend", {})
        assert (status, body["error"]["reason"]) == (403, "PERMISSION_DENIED")
        status, body = _post(url + "api/identities/nobody/suspend", {"x-mobkit-console": "1"})
        assert (status, body["error"]["reason"]) == (404, "IDENTITY_NOT_FOUND")
        with urllib.request.urlopen(url + "static/vendor/cytoscape.min.js", timeout=10) as js:
            assert js.status == 200  # the graph library ships in the package: no CDN
        cursors = [e["cursor"] for e in _get(url + "api/events?after=0")["events"]]
        assert len(cursors) >= 3
        # A browser reconnecting with the last id it saw gets exactly the next event.
        assert _first_live_id(url, last_event_id=cursors[1]) == cursors[2]
        assert _first_live_id(url, after=cursors[0]) == cursors[1]


def _first_live_id(url: str, *, last_event_id: int | None = None, after: int = 0) -> int:
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    request = urllib.request.Request(f"{url}api/live?after={after}", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as stream:  # each read is bounded
        for raw in stream:
            line = raw.decode().strip()
            if line.startswith("id: "):
                return int(line.removeprefix("id: "))
    raise AssertionError("the live stream ended without an event")
