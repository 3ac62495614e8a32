"""ModuleStatus <-> proto, and the gRPC codes of module errors."""

from __future__ import annotations

import grpc
import pytest

from mobkit.core.types import ModuleConfig, RestartPolicy
from mobkit.gen.orchestrator.v1 import orchestrator_pb2 as pb
from mobkit.modules.domain import (
    ModuleHealth,
    ModuleStatus,
    ModuleUnavailable,
    ToolFailed,
    ToolNotFound,
    ToolNotGranted,
)
from mobkit.orchestrator.servicer import ERRORS
from mobkit.server.errors import code_for
from mobkit.wire.modules import status_from_proto, status_to_proto


@pytest.mark.parametrize("state", list(ModuleHealth))
@pytest.mark.parametrize("policy", list(RestartPolicy))
def test_status_round_trips(state: ModuleHealth, policy: RestartPolicy) -> None:
    status = ModuleStatus(
        config=ModuleConfig("clock", "/bin/clock", ("-v",), policy),
        state=state,
        restart_count=2,
        detail="killed by SIGKILL",
        tools=("clock.now",),
        required=False,
        pid=42 if state is ModuleHealth.HEALTHY else None,
    )
    assert status_from_proto(status_to_proto(status)) == status


def test_healthy_is_running_on_the_wire() -> None:
    status = ModuleStatus(ModuleConfig("m", "x"), ModuleHealth.HEALTHY)
    assert status_to_proto(status).state == pb.MODULE_STATE_RUNNING


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ModuleUnavailable("m", "restarting"), grpc.StatusCode.UNAVAILABLE),
        (ToolNotGranted("alice", "m.t"), grpc.StatusCode.PERMISSION_DENIED),
        (ToolNotFound("m.t", "no such tool"), grpc.StatusCode.NOT_FOUND),
        (ToolFailed("m.t", "bad input"), grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
def test_orchestrator_maps_module_errors(error: Exception, code: grpc.StatusCode) -> None:
    assert code_for(error, ERRORS) is code
