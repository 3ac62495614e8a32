"""A scriptable MCP module for the module tests (run as a script by the supervisor).

``--crash-on-start CODE`` writes a line to stderr and exits with CODE before
speaking MCP (a module that cannot start, or a crash loop under a restart policy).
``--spam LINES`` first writes that many numbered 100-byte lines to stderr, then
``spam done <pid>`` (a module that logs a lot).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

from mcp.server.mcpserver import MCPServer

server = MCPServer("mobkit-fake")


@server.tool()
def pid() -> int:
    """This process's id."""
    return os.getpid()


@server.tool()
def echo(text: str) -> str:
    """Return the text, with the FAKE_TAG environment variable if set."""
    tag = os.environ.get("FAKE_TAG")
    return f"{tag}:{text}" if tag else text


@server.tool()
def exit_soon(code: int) -> str:
    """Exit with ``code`` shortly after answering."""
    threading.Timer(0.2, os._exit, args=(code,)).start()
    return "bye"


@server.tool()
def block(marker: str) -> str:
    """Write this pid to ``marker``, then hang (until killed, at most a minute)."""
    Path(marker).write_text(str(os.getpid()))
    time.sleep(60)
    return "unblocked"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crash-on-start", type=int)
    parser.add_argument("--spam", type=int, default=0)
    args = parser.parse_args()
    for i in range(args.spam):
        print(f"spam {i:08d} " + "x" * 85, file=sys.stderr)
    if args.spam:
        print(f"spam done {os.getpid()}", file=sys.stderr, flush=True)
    if args.crash_on_start is not None:
        print("fake module refuses to start", file=sys.stderr, flush=True)
        sys.exit(args.crash_on_start)
    server.run("stdio")


if __name__ == "__main__":
    main()
