"""Proto <-> domain for the module messages of ``mobkit.orchestrator.v1``, and the
module errors a servicer reports."""

from __future__ import annotations

from typing import Any

from mobkit.core.types import ModuleConfig, RestartPolicy
from mobkit.gen.orchestrator.v1 import orchestrator_pb2 as pb
from mobkit.modules.domain import (
    ModuleError,
    ModuleHealth,
    ModuleStartFailed,
    ModuleStatus,
    ModuleUnavailable,
    ToolFailed,
    ToolNotFound,
    ToolNotGranted,
)

ERRORS: tuple[type[ModuleError], ...] = (
    ModuleUnavailable,
    ModuleStartFailed,
    ToolNotFound,
    ToolNotGranted,
    ToolFailed,
)
"""List in a servicer's ``service_errors`` (the orchestrator's: turns run tools); each
declares its code."""

_POLICY: dict[RestartPolicy, Any] = {
    RestartPolicy.NEVER: pb.RESTART_POLICY_NEVER,
    RestartPolicy.ON_FAILURE: pb.RESTART_POLICY_ON_FAILURE,
    RestartPolicy.ALWAYS: pb.RESTART_POLICY_ALWAYS,
}
_POLICY_BACK = {v: k for k, v in _POLICY.items()}

_STATE: dict[ModuleHealth, Any] = {
    ModuleHealth.STARTING: pb.MODULE_STATE_STARTING,
    ModuleHealth.HEALTHY: pb.MODULE_STATE_RUNNING,
    ModuleHealth.RESTARTING: pb.MODULE_STATE_RESTARTING,
    ModuleHealth.UNHEALTHY: pb.MODULE_STATE_UNHEALTHY,
    ModuleHealth.STOPPED: pb.MODULE_STATE_STOPPED,
}
_STATE_BACK = {v: k for k, v in _STATE.items()}


def config_to_proto(c: ModuleConfig) -> pb.ModuleConfig:
    return pb.ModuleConfig(
        id=c.id, command=c.command, args=list(c.args), restart_policy=_POLICY[c.restart_policy]
    )


def config_from_proto(msg: pb.ModuleConfig) -> ModuleConfig:
    return ModuleConfig(
        id=msg.id,
        command=msg.command,
        args=tuple(msg.args),
        # UNSPECIFIED is documented as NEVER.
        restart_policy=_POLICY_BACK.get(msg.restart_policy, RestartPolicy.NEVER),
    )


def status_to_proto(s: ModuleStatus) -> pb.ModuleStatus:
    return pb.ModuleStatus(
        config=config_to_proto(s.config),
        state=_STATE[s.state],
        restart_count=s.restart_count,
        detail=s.detail,
        tools=list(s.tools),
        required=s.required,
        pid=s.pid or 0,
    )


def status_from_proto(msg: pb.ModuleStatus) -> ModuleStatus:
    return ModuleStatus(
        config=config_from_proto(msg.config),
        state=_STATE_BACK.get(msg.state, ModuleHealth.STOPPED),
        restart_count=msg.restart_count,
        detail=msg.detail,
        tools=tuple(msg.tools),
        required=msg.required,
        pid=msg.pid or None,
    )
