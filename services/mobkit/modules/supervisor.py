"""The module supervisor: runs each configured module, restarts it by policy, parks a
crash loop, and routes agents' tool calls to it.

Each module has one long-lived task that owns its process and MCP session
(``connection.connect``) and walks the states::

    Starting --handshake + tools/list--> Healthy --exit--> Restarting --backoff--> Starting
        |                                                \\--> Unhealthy (policy never, or parked)
        \\--failed start---------------------------------/ \\--> Stopped (clean exit, no restart)

A clean exit (code 0) is restarted only under ``always``; a failure (non-zero
code, a signal, a failed spawn or handshake) under ``on_failure`` and
``always``. Restarts back off exponentially (``backoff_initial`` doubling up to
``backoff_max``); ``crash_loop_limit`` exits within ``crash_loop_window``
park the module Unhealthy with its last error.

Every transition and every tool call is emitted as a structural event (kind
``module_started``, ``module_healthy``, ``module_crashed``, ``module_exited``,
``module_restarting``, ``module_parked``, ``module_stopped``, ``tool_called``;
data ``{"module": id, ...}``) through the orchestrator's event sink, so module
events share the log, cursors and guarantees of every other structural event.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from mcp import MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT, CallToolResult, Tool

from mobkit.core.errors import MobKitError
from mobkit.core.types import AgentBuildDraft, ExternalToolDef, ModuleConfig, RestartPolicy
from mobkit.modules.config import ModulesConfig, Supervision
from mobkit.modules.connection import McpConnection, connect, describe_exit
from mobkit.modules.domain import (
    ModuleHealth,
    ModuleStartFailed,
    ModuleStatus,
    ModuleUnavailable,
    ToolFailed,
    ToolNotFound,
    ToolNotGranted,
    qualified_tool,
    split_tool,
)
from mobkit.modules.logs import ModuleLog, StderrPump

log = logging.getLogger("mobkit.modules")

H = ModuleHealth
Emit = Callable[[str, str | None, dict[str, Any]], None]
ToolCaller = Callable[[str, dict[str, Any]], Awaitable[Any]]

STOP_TIMEOUT = 15.0  # the SDK's own shutdown escalation takes up to ~6 s per module
START_SLACK = 10.0  # spawn and teardown time on top of start_timeout
DETAIL_MAX = 300


def _no_events(kind: str, identity: str | None, data: dict[str, Any]) -> None:
    pass


@dataclass(frozen=True, slots=True)
class _Outcome:
    """How one run of the process ended."""

    code: int | None
    detail: str
    healthy_for: float = 0.0


class _Module:
    def __init__(
        self,
        config: ModuleConfig,
        *,
        required: bool,
        env: dict[str, str],
        supervision: Supervision,
        emit: Emit,
        log_path: Path,
        namespace: str,
    ) -> None:
        self.config = config
        self.id = config.id
        self.required = required
        self.env = env
        self.s = supervision
        self._emit_event = emit
        self.log_path = log_path
        self.namespace = namespace
        self.state = H.STARTING
        self.restart_count = 0
        self.detail = ""
        self.pid: int | None = None
        self.tools: dict[str, Tool] = {}
        self.conn: McpConnection | None = None
        self._changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._exits: collections.deque[float] = collections.deque()
        self.first: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None
        self._errlog: ModuleLog | None = None
        self._pump: StderrPump | None = None  # the current (or last) process's stderr

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        # The module's stderr, kept across restarts and rotated by size; its last line
        # explains a crash.
        self._errlog = ModuleLog(
            self.log_path, max_bytes=self.s.log_max_bytes, backups=self.s.log_backups
        )
        self.task = asyncio.create_task(self._run(), name=f"module-{self.id}")

    async def stop(self, timeout: float) -> None:
        self._stop.set()
        task = self.task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                log.warning("module %s did not stop in %.0fs; cancelling", self.id, timeout)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._pump is not None:
            await self._pump.drained(1.0)  # the stopped process's last lines
        if self._errlog is not None:
            self._errlog.close()
            self._errlog = None

    def _set(self, state: ModuleHealth) -> None:
        self.state = state
        self._changed.set()
        self._changed = asyncio.Event()

    def _emit(self, kind: str, **data: Any) -> None:
        self._emit_event(kind, None, {"module": self.id, **data})

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        consecutive = 0
        try:
            while not self._stop.is_set():
                outcome = await self._attempt()
                never_started = not self.first.done()
                if never_started:
                    self.first.set_result(outcome.detail)
                if self._stop.is_set():
                    break
                self.detail = outcome.detail
                clean = outcome.code == 0
                policy = self.config.restart_policy
                restart = policy is RestartPolicy.ALWAYS or (
                    policy is RestartPolicy.ON_FAILURE and not clean
                )
                # A required module gets one try at start-up, which then fails on it.
                restart = restart and not (never_started and self.required)
                self._emit(
                    "module_exited" if clean else "module_crashed",
                    exit_code=outcome.code,
                    detail=outcome.detail,
                    restart=restart,
                )
                if not restart:
                    why = (
                        "required at start-up" if never_started and self.required else policy.value
                    )
                    log.warning("module %s: %s; not restarted (%s)", self.id, outcome.detail, why)
                    self._set(H.STOPPED if clean else H.UNHEALTHY)
                    return
                now = loop.time()
                self._exits.append(now)
                while self._exits and now - self._exits[0] > self.s.crash_loop_window:
                    self._exits.popleft()
                if len(self._exits) >= self.s.crash_loop_limit:
                    self.detail = (
                        f"parked after {len(self._exits)} exits within "
                        f"{self.s.crash_loop_window:g}s; last: {outcome.detail}"
                    )
                    log.error("module %s: %s", self.id, self.detail)
                    self._set(H.UNHEALTHY)
                    self._emit("module_parked", exits=len(self._exits), detail=self.detail)
                    return
                # A run that stayed healthy for a whole window starts the backoff over.
                consecutive = (
                    1 if outcome.healthy_for >= self.s.crash_loop_window else consecutive + 1
                )
                delay = self.s.backoff(consecutive)
                log.warning("module %s: %s; restarting in %.2fs", self.id, outcome.detail, delay)
                self._set(H.RESTARTING)
                self._emit(
                    "module_restarting",
                    attempt=self.restart_count + 1,
                    delay_ms=int(delay * 1000),
                    detail=outcome.detail,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                if self._stop.is_set():
                    break
                self.restart_count += 1
            self._set(H.STOPPED)
            self._emit("module_stopped", detail="shut down")
        finally:
            if not self.first.done():
                self.first.set_result("stopped before it became healthy")

    async def _attempt(self) -> _Outcome:
        """Spawn, handshake, serve until the process exits (or a stop is asked)."""
        self.tools = {}
        self._set(H.STARTING)
        assert self._errlog is not None
        pump = self._pump = self._errlog.pump()
        loop = asyncio.get_running_loop()
        try:
            async with connect(self.config, self.env, pump.stderr) as conn:
                pump.spawned()  # the child has its own copy of the pipe now
                self.pid = conn.pid
                self._emit(
                    "module_started",
                    pid=conn.pid,
                    attempt=self.restart_count + 1,
                    namespace=self.namespace,
                )
                try:
                    with anyio.fail_after(self.s.start_timeout):
                        tools = await conn.handshake()
                except TimeoutError:
                    return _Outcome(
                        conn.returncode,
                        f"no MCP handshake within {self.s.start_timeout:g}s",
                    )
                except Exception as exc:
                    code = await conn.settle()
                    if code is None:
                        return _Outcome(None, f"MCP handshake failed: {_one_line(exc)}")
                    return _Outcome(code, await self._why(code, pump, "before the MCP handshake"))
                self.tools = {t.name: t for t in tools}
                self.conn = conn
                healthy_at = loop.time()
                self._set(H.HEALTHY)
                names = sorted(qualified_tool(self.id, t) for t in self.tools)
                log.info("module %s healthy (pid %d): %s", self.id, conn.pid, ", ".join(names))
                self._emit("module_healthy", pid=conn.pid, tools=names)
                if not self.first.done():
                    self.first.set_result(None)
                code = await conn.wait_exit(self._stop)
                self.conn = None
                ran = loop.time() - healthy_at
                if code is None:
                    return _Outcome(None, "stopped", ran)
                return _Outcome(code, await self._why(code, pump), ran)
        except OSError as exc:
            return _Outcome(None, f"cannot run {self.config.command!r}: {exc.strerror or exc}")
        except Exception as exc:  # the SDK's task groups may raise exception groups
            log.exception("module %s: session failed", self.id)
            return _Outcome(None, f"MCP session failed: {_one_line(exc)}")
        finally:
            pump.spawned()
            self.conn = None
            self.pid = None

    async def _why(self, code: int, pump: StderrPump, when: str = "") -> str:
        text = describe_exit(code) + (f" {when}" if when else "")
        await pump.drained()  # the process is gone: its last lines are on their way
        last = pump.last_line()
        return _clip(f"{text}: {last}" if last else text)

    # -- tool calls -------------------------------------------------------------------

    async def _healthy(self) -> McpConnection:
        """The live connection; waits (up to ``restart_wait``) while starting or restarting."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.s.restart_wait
        while True:
            changed = self._changed
            if self.state is H.HEALTHY and self.conn is not None:
                return self.conn
            if self.state in (H.UNHEALTHY, H.STOPPED):
                raise ModuleUnavailable(
                    self.id, f"{self.state.value}: {self.detail or 'not running'}"
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                last = f" (last: {self.detail})" if self.detail else ""
                raise ModuleUnavailable(
                    self.id, f"still {self.state.value} after {self.s.restart_wait:g}s{last}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        name = qualified_tool(self.id, tool)
        conn = await self._healthy()
        if tool not in self.tools:
            offered = ", ".join(sorted(qualified_tool(self.id, t) for t in self.tools))
            raise ToolNotFound(name, f"module {self.id!r} offers {offered or 'no tools'}")
        try:
            result = await conn.call_tool(tool, arguments, self.s.call_timeout)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                raise ModuleUnavailable(
                    self.id, f"it stopped during the call to {name!r}"
                ) from None
            if exc.code == REQUEST_TIMEOUT:
                raise ModuleUnavailable(
                    self.id, f"{name!r} did not answer within {self.s.call_timeout:g}s"
                ) from None
            raise ToolFailed(name, _clip(exc.message)) from None
        except Exception as exc:  # an unparseable or unexpected result
            raise ToolFailed(name, _one_line(exc)) from None
        if result.is_error:
            raise ToolFailed(name, _clip(result_text(result) or "the tool reported an error"))
        return result

    def status(self) -> ModuleStatus:
        return ModuleStatus(
            config=self.config,
            state=self.state,
            restart_count=self.restart_count,
            detail=self.detail,
            tools=tuple(sorted(qualified_tool(self.id, t) for t in self.tools)),
            required=self.required,
            pid=self.pid,
        )


class ModuleSupervisor:
    """Every module of one ``[modules]`` section, in this process."""

    def __init__(self, config: ModulesConfig, *, log_dir: Path, emit: Emit | None = None) -> None:
        self.config = config
        self.emit: Emit = emit or _no_events
        self.log_dir = log_dir
        self._modules: dict[str, _Module] = {}

    async def start(self) -> None:
        """Start every module and wait for each first attempt. A required module that
        fails it stops everything and raises ``ModuleStartFailed`` naming it; the
        others go on under their policy."""
        for config in self.config.modules:
            module = _Module(
                config,
                required=config.id in self.config.required,
                env=self.config.env(config.id),
                supervision=self.config.supervision,
                emit=self.emit,
                log_path=self.log_dir / f"{config.id}.log",
                namespace=self.config.mobkit.discovery.namespace,
            )
            self._modules[config.id] = module
            module.start()
        if not self._modules:
            return
        budget = self.config.supervision.start_timeout + START_SLACK
        firsts = [asyncio.shield(m.first) for m in self._modules.values()]
        await asyncio.wait(firsts, timeout=budget)
        for module in self._modules.values():
            if not module.required:
                continue
            failure = module.first.result() if module.first.done() else "start-up timed out"
            if failure is not None:
                await self.stop()
                raise ModuleStartFailed(module.id, failure)

    async def stop(self) -> None:
        await asyncio.gather(*(m.stop(STOP_TIMEOUT) for m in self._modules.values()))

    def statuses(self) -> list[ModuleStatus]:
        return [self._modules[i].status() for i in sorted(self._modules)]

    def status(self, module_id: str) -> ModuleStatus:
        return self._module(module_id).status()

    def tools(self) -> list[ExternalToolDef]:
        """The tools of the healthy modules, as agents' drafts name them."""
        out = []
        for module_id in sorted(self._modules):
            module = self._modules[module_id]
            for name in sorted(module.tools):
                tool = module.tools[name]
                out.append(
                    ExternalToolDef(
                        name=qualified_tool(module_id, name),
                        description=tool.description or "",
                        input_schema=dict(tool.input_schema),
                    )
                )
        return out

    def _module(self, module_id: str) -> _Module:
        try:
            return self._modules[module_id]
        except KeyError:
            raise ToolNotFound(module_id, f"no module {module_id!r} is configured") from None

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        identity: str | None = None,
        granted: frozenset[str] | None = None,
    ) -> Any:
        """Run tool ``<module>.<tool>``; returns its value (see :func:`result_value`).

        ``granted`` (the caller's draft tools) refuses any other name before anything
        runs. Every call is recorded as a ``tool_called`` event.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        module_id = name.partition(".")[0]
        try:
            if granted is not None and name not in granted:
                raise ToolNotGranted(identity or "caller", name)
            module_id, tool = split_tool(name)
            result = await self._module(module_id).call(tool, dict(arguments))
        except MobKitError as exc:
            self._tool_event(name, module_id, identity, started, error=exc)
            raise
        self._tool_event(name, module_id, identity, started)
        return result_value(result)

    def _tool_event(
        self,
        name: str,
        module_id: str,
        identity: str | None,
        started: float,
        *,
        error: MobKitError | None = None,
    ) -> None:
        data: dict[str, Any] = {
            "module": module_id,
            "tool": name,
            "ok": error is None,
            "duration_ms": int((asyncio.get_running_loop().time() - started) * 1000),
        }
        if error is not None:
            data["reason"] = error.reason
            data["detail"] = _clip(error.message)
        self.emit("tool_called", identity, data)

    def caller(self, identity: str, draft: AgentBuildDraft | None) -> ToolCaller:
        """The ``tool_caller`` of one turn: only the tools its draft grants."""
        granted = frozenset(t.name for t in (draft.external_tools if draft else ()))

        async def call(name: str, arguments: dict[str, Any]) -> Any:
            return await self.call_tool(name, arguments, identity=identity, granted=granted)

        return call


def result_value(result: CallToolResult) -> Any:
    """What ``ctx.call_tool`` returns: the structured content (a JSON object) when the
    tool gives one, else its text, else its content blocks as JSON."""
    if result.structured_content is not None:
        return result.structured_content
    text = result_text(result)
    if text is not None:
        return text
    return [
        block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content
    ]


def result_text(result: CallToolResult) -> str | None:
    texts = [getattr(block, "text", None) for block in result.content]
    if not texts or any(t is None for t in texts):
        return None
    return "\n".join(str(t) for t in texts)


def _one_line(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return _clip(f"{type(exc).__name__}: {exc}")


def _clip(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= DETAIL_MAX else line[: DETAIL_MAX - 3] + "..."
