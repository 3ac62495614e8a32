"""The error registry: one class per reason, every class rebuilt from the metadata it
sends, and the client exporting exactly the shared reasons."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest

import mobkit.client
import mobkit.client.errors as client_errors
from mobkit.continuity.domain import IncompleteResolve
from mobkit.core import errors as e
from mobkit.core.error_registry import REGISTRY, ErrorRegistry
from mobkit.flows import errors as flows
from mobkit.modules import domain as modules
from mobkit.roster.domain import RosterUnreadable
from mobkit.runtime import domain as runtime

# One instance of every registered class and of every variant a client decodes; a
# class registered without a sample here fails test_every_registered_class_has_a_sample.
SAMPLES: list[e.MobKitError] = [
    e.InvalidIdentity("a b", "must not contain whitespace"),
    e.InvalidArgument("ttl", "too long"),
    e.BackendUnavailable("etcd", "connection refused"),
    e.BackendFull("database or disk is full", backend="sqlite"),
    e.Unauthenticated("missing bearer token"),
    e.PermissionDenied("token may not renew"),
    e.StaleFencingToken("planner", 3, 5),
    e.StaleCheckpointVersion("planner", 7, 7),
    e.GenerationMismatch("planner", 1, 2),
    e.ContinuityRecordNotFound("planner"),
    e.StoreCorruption("checksum mismatch", identity="planner"),
    e.StoreCorruption("checksum mismatch"),
    e.SnapshotTooLarge(2048, 1024),
    e.RosterInvalid("unknown profile", entry="planner", field="profile"),
    e.SelfEdge("planner"),
    e.CustomizerFailed("no model", identity="planner"),
    e.IdentityNotFound("zed"),
    e.NotAddressable("erin"),
    e.NotActive("planner", "dormant", retry_after_ms=250),
    e.NotActive("planner", "broken"),
    e.InvalidTransition("planner", "active", "uninitialized"),
    e.StaleEventCursor(10, 4),
    e.TopologyViolation("planner", "critic"),
    runtime.SessionNotFound("s-1"),
    runtime.SessionClosed("s-1"),
    runtime.CallbackUnavailable("s-1", "send_peer"),
    runtime.ModelUnavailable("tiny", "HTTP 503: overloaded"),
    runtime.ModelFailed("tiny", "HTTP 401: bad key"),
    modules.ModuleStartFailed("clock", "exited 1"),
    modules.ModuleUnavailable("clock", "restarting"),
    modules.ToolNotFound("clock.now", "no such tool"),
    modules.ToolNotGranted("planner", "clock.now"),
    modules.ToolFailed("clock.now", "boom"),
    flows.FlowNotFound("ask"),
    flows.RunNotFound("0190-ab"),
    flows.FlowFailed("0190-ab", "step 'frame': template does not render"),
    flows.RunCanceled("0190-ab"),
    flows.FlowTurnTimedOut("answer", "worker-1", 1.5),
    flows.SchemaValidation("answer", "'x' is not of type 'object'"),
    flows.InsufficientTargets("answer", 4, 3),
    flows.FrameDepthLimitExceeded("nested", 8, 8),
    flows.SpecRevisionConflict("ask", 3, 4),
    flows.TurnNotFound("turn-ab"),
    # variants: a parent's reason, their own constructor
    e.StoreUnavailable("disk gone", backend="sqlite"),
    e.LeaseProviderUnavailable("etcd down", backend="etcd"),
    e.RosterUnavailable("etcd down"),
    e.TopologyUnavailable("down"),
    e.CustomizerUnavailable("down"),
    RosterUnreadable("no such file"),
    IncompleteResolve("2 entries for 3 identities"),
]


@pytest.mark.parametrize("exc", SAMPLES, ids=lambda x: type(x).__name__)
def test_every_error_is_rebuilt_from_its_own_metadata(exc: e.MobKitError) -> None:
    rebuilt = type(exc).from_metadata(exc.message, exc.metadata)
    assert type(rebuilt) is type(exc)
    assert vars(rebuilt) == vars(exc)
    assert str(rebuilt) == str(exc)


def test_every_registered_class_has_a_sample() -> None:
    sampled = {type(x) for x in SAMPLES}
    assert [cls for cls in REGISTRY.classes() if cls not in sampled] == []


def test_every_registered_code_is_a_grpc_status() -> None:
    for cls in REGISTRY.classes():
        assert grpc.StatusCode[cls.grpc_code] is not grpc.StatusCode.OK


def test_one_class_per_reason() -> None:
    registry = ErrorRegistry()
    registry.shared(e.SelfEdge)
    with pytest.raises(TypeError, match="already"):
        registry.specific(e.SelfEdge)
    with pytest.raises(TypeError, match="no reason of its own"):
        registry.shared(e.StoreUnavailable)


def test_the_client_exports_every_shared_reason_and_no_other() -> None:
    exported = {
        obj
        for name in client_errors.__all__
        if isinstance(obj := getattr(client_errors, name), type)
        and issubclass(obj, e.MobKitError)
        and "reason" in vars(obj)
        and obj is not e.MobKitError
    }
    assert exported == set(REGISTRY.shared_classes())
    assert all(getattr(mobkit.client, cls.__name__) is cls for cls in exported)


def test_the_client_library_does_not_import_the_server() -> None:
    probe = "import sys, mobkit.client; print([m for m in sys.modules if 'mobkit.server' in m])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
