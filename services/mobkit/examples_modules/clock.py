"""``clock``: a tiny MCP tool server over stdio, the example module.

Run by the supervisor from the ``[modules]`` section (see ``examples/mobkit.toml``)::

    [[modules.module]]
    id = "clock"
    python_module = "mobkit.examples_modules.clock"

Agents whose draft grants them call ``clock.now`` and ``clock.since``. The
optional ``CLOCK_LABEL`` environment variable (pre-spawn data) is echoed in
every answer, which shows the environment reached the module.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from typing import TypedDict

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer(
    "mobkit-clock",
    instructions="Wall-clock time for agents: now() and since(iso).",
)


class Now(TypedDict):
    iso: str
    unix: float
    label: str


class Since(TypedDict):
    seconds: float
    label: str


def _label() -> str:
    return os.environ.get("CLOCK_LABEL", "")


@server.tool()
def now(utc_offset_minutes: int = 0) -> Now:
    """The current time, ISO 8601, at a fixed UTC offset (default UTC)."""
    if not -24 * 60 < utc_offset_minutes < 24 * 60:
        raise ToolError("utc_offset_minutes must be within a day")
    moment = datetime.now(UTC)
    zone = timezone(timedelta(minutes=utc_offset_minutes))
    return Now(iso=moment.astimezone(zone).isoformat(), unix=moment.timestamp(), label=_label())


@server.tool()
def since(iso: str) -> Since:
    """Seconds elapsed since an ISO 8601 time (negative if it is in the future)."""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        raise ToolError(f"not an ISO 8601 time: {iso!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elapsed = (datetime.now(UTC) - moment).total_seconds()
    return Since(seconds=elapsed, label=_label())


def main() -> None:
    server.run("stdio")


if __name__ == "__main__":
    main()
