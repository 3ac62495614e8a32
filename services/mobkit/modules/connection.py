"""One module process and its MCP session, over the ``mcp`` SDK's stdio client.

``connect`` spawns the module with ``stdio_client`` (newline-delimited JSON-RPC
over the child's stdin/stdout, its own process group) and opens a
``ClientSession`` on it. Both are anyio-based: enter and leave the context in
one long-lived task (the supervisor's task of that module); requests such as
``call_tool`` may come from any task of the same event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from importlib import metadata
from typing import Any, TextIO

import mcp_types
from mcp import ClientSession, StdioServerParameters, stdio_client

from mobkit.core.types import ModuleConfig

LIST_TOOLS_MAX_PAGES = 100  # a paginator that never ends cannot hang a start


def _client_info() -> mcp_types.Implementation:
    try:
        version = metadata.version("mobkit")
    except metadata.PackageNotFoundError:
        version = "0"
    return mcp_types.Implementation(name="mobkit", version=version)


class McpConnection:
    """A spawned module: its process and its MCP session."""

    def __init__(self, session: ClientSession, process: Any) -> None:
        self.session = session
        self._process = process

    @property
    def pid(self) -> int:
        return int(self._process.pid)

    @property
    def returncode(self) -> int | None:
        code = self._process.returncode
        return None if code is None else int(code)

    async def handshake(self) -> list[mcp_types.Tool]:
        """MCP ``initialize``, then every page of ``tools/list``."""
        await self.session.initialize()
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _ in range(LIST_TOOLS_MAX_PAGES):
            params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await self.session.list_tools(params=params)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def call_tool(
        self, name: str, arguments: dict[str, Any], timeout: float
    ) -> mcp_types.CallToolResult:
        return await self.session.call_tool(name, arguments, read_timeout_seconds=timeout)

    async def wait_exit(self, stop: asyncio.Event, poll: float = 0.05) -> int | None:
        """Until the process exits (its code) or ``stop`` is set (None)."""
        while self._process.returncode is None:
            if stop.is_set():
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll)
        return self.returncode

    async def settle(self, timeout: float = 2.0) -> int | None:
        """The exit code once the process is gone (a closed connection usually means it
        is dying); None if it is still running after ``timeout``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait_exit(asyncio.Event(), poll=0.02), timeout)
        return self.returncode


def _process_of(transport: Any) -> Any:
    """The child process ``stdio_client`` spawned.

    The SDK does not expose it, but the supervisor needs its exit status (a clean
    exit is restarted only under ``always``) and its pid. It is the ``process``
    local of the transport's suspended generator; if a future SDK renames it, this
    fails loudly (and the module tests with it) instead of guessing.
    """
    frame = getattr(getattr(transport, "gen", None), "ag_frame", None)
    process = frame.f_locals.get("process") if frame is not None else None
    if process is None or not hasattr(process, "returncode") or not hasattr(process, "pid"):
        raise RuntimeError("this mcp SDK's stdio_client no longer exposes its process")
    return process


@asynccontextmanager
async def connect(
    config: ModuleConfig, env: dict[str, str], errlog: TextIO
) -> AsyncIterator[McpConnection]:
    """Spawn the module and open its session (not yet initialised).

    Leaving the context closes the session and stops the process the SDK's way:
    close stdin, wait, SIGTERM the process group, SIGKILL.
    Raises ``OSError`` when the command cannot be spawned.
    """
    params = StdioServerParameters(command=config.command, args=list(config.args), env=env)
    async with AsyncExitStack() as stack:
        transport = stdio_client(params, errlog=errlog)
        read, write = await stack.enter_async_context(transport)
        process = _process_of(transport)
        session = ClientSession(read, write, client_info=_client_info())
        await stack.enter_async_context(session)
        yield McpConnection(session, process)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"
