"""Module supervision: states, status and errors (no gRPC, no MCP here)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Self

from mobkit.core.error_registry import REGISTRY
from mobkit.core.errors import Metadata, MobKitError
from mobkit.core.types import ModuleConfig

TOOL_SEPARATOR = "."
"""Agents see a module's tool ``now`` of module ``clock`` as ``clock.now``."""


class ModuleHealth(enum.Enum):
    STARTING = "starting"  # spawned, waiting for the MCP handshake and the tool list
    HEALTHY = "healthy"  # answering MCP: tool calls go through
    RESTARTING = "restarting"  # exited; waiting out its backoff before the next start
    UNHEALTHY = "unhealthy"  # failed and not restarted (policy ``never``, or parked)
    STOPPED = "stopped"  # exited cleanly and not restarted, or shut down


@dataclass(frozen=True, slots=True)
class ModuleStatus:
    config: ModuleConfig
    state: ModuleHealth
    restart_count: int = 0
    detail: str = ""
    tools: tuple[str, ...] = ()
    required: bool = True
    pid: int | None = None


def qualified_tool(module: str, tool: str) -> str:
    return f"{module}{TOOL_SEPARATOR}{tool}"


def split_tool(name: str) -> tuple[str, str]:
    """``clock.now`` -> (``clock``, ``now``); module ids never contain the separator."""
    module, sep, tool = name.partition(TOOL_SEPARATOR)
    if not sep or not module or not tool:
        raise ToolNotFound(name, f"tool names are <module>{TOOL_SEPARATOR}<tool>")
    return module, tool


class ModuleError(MobKitError):
    """Base of the module and tool errors."""


@REGISTRY.specific
class ModuleStartFailed(ModuleError):
    """A required module could not start: start-up fails with this one line."""

    reason = "MODULE_START_FAILED"
    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, module: str, detail: str) -> None:
        super().__init__(
            f"required module {module!r} could not start: {detail}", module=module, detail=detail
        )
        self.module = module
        self.detail = detail

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["module"], metadata["detail"])


@REGISTRY.specific
class ModuleUnavailable(ModuleError):
    """The module is not healthy (restarting, parked...) or died during the call."""

    reason = "MODULE_UNAVAILABLE"
    grpc_code = "UNAVAILABLE"

    def __init__(self, module: str, detail: str) -> None:
        super().__init__(f"module {module!r} unavailable: {detail}", module=module, detail=detail)
        self.module = module
        self.detail = detail

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["module"], metadata["detail"])


@REGISTRY.specific
class ToolNotFound(ModuleError):
    reason = "TOOL_NOT_FOUND"
    grpc_code = "NOT_FOUND"

    def __init__(self, tool: str, detail: str) -> None:
        super().__init__(f"no tool {tool!r}: {detail}", tool=tool, detail=detail)
        self.tool = tool
        self.detail = detail

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["tool"], metadata["detail"])


@REGISTRY.specific
class ToolNotGranted(ModuleError):
    """The agent's build draft does not list the tool: it may not call it."""

    reason = "TOOL_NOT_GRANTED"
    grpc_code = "PERMISSION_DENIED"

    def __init__(self, identity: str, tool: str) -> None:
        super().__init__(
            f"{identity!r} may not call tool {tool!r}: its build draft does not grant it",
            identity=identity,
            tool=tool,
        )
        self.identity = identity
        self.tool = tool

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["identity"], metadata["tool"])


@REGISTRY.specific
class ToolFailed(ModuleError):
    """The tool ran and reported an error (MCP ``isError`` or a JSON-RPC error)."""

    reason = "TOOL_FAILED"
    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, tool: str, detail: str) -> None:
        super().__init__(f"tool {tool!r} failed: {detail}", tool=tool, detail=detail)
        self.tool = tool
        self.detail = detail

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["tool"], metadata["detail"])
