"""Helpers of the module tests: the fake module's config, bounded waits, events."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

FAKE = Path(__file__).with_name("fake_module.py")


def fake_module(
    module_id: str = "fake",
    *,
    policy: str = "on_failure",
    required: bool = True,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A ``[[modules.module]]`` entry running tests/modules/fake_module.py."""
    entry: dict[str, Any] = {
        "id": module_id,
        "command": sys.executable,
        "args": [str(FAKE), *args],
        "restart_policy": policy,
        "required": required,
    }
    if env:
        entry["env"] = env
    return entry


FAST = {
    "backoff_initial": 0.05,
    "backoff_max": 0.2,
    "crash_loop_limit": 3,
    "crash_loop_window": 120.0,
    "restart_wait": 20.0,
    "start_timeout": 30.0,
}
"""Short backoffs so restarts happen quickly; waits stay generous."""


class Events:
    """An ``emit`` target recording (kind, identity, data)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str | None, dict[str, Any]]] = []

    def __call__(self, kind: str, identity: str | None, data: dict[str, Any]) -> None:
        self.items.append((kind, identity, data))

    def kinds(self, module: str | None = None) -> list[str]:
        return [k for k, _, d in self.items if module is None or d.get("module") == module]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for k, _, d in self.items if k == kind]
