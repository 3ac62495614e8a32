"""The flow and run errors of ``mob_error.rs``, each with its reason and gRPC code.

Registered as *specific* reasons: the flows client decodes them (``FlowService``),
and a run that fails records the same reason and message in its state, so
``GetRun`` and ``WatchRun`` say why in the same words the error would.
"""

from __future__ import annotations

from typing import Self

from mobkit.core.error_registry import REGISTRY
from mobkit.core.errors import Metadata, MobKitError


class FlowError(MobKitError):
    """Base of the flows' errors."""


@REGISTRY.specific
class FlowNotFound(FlowError):
    reason = "FLOW_NOT_FOUND"
    grpc_code = "NOT_FOUND"

    def __init__(self, flow_id: str) -> None:
        super().__init__(f"flow {flow_id!r} is not in the roster", flow_id=flow_id)
        self.flow_id = flow_id

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["flow_id"])


@REGISTRY.specific
class RunNotFound(FlowError):
    reason = "RUN_NOT_FOUND"
    grpc_code = "NOT_FOUND"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r} (unknown, or past its retention)", run_id=run_id)
        self.run_id = run_id

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["run_id"])


@REGISTRY.specific
class FlowFailed(FlowError):
    """A run ended Failed; ``detail`` is its step's failure."""

    reason = "FLOW_FAILED"
    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, run_id: str, detail: str) -> None:
        super().__init__(f"run {run_id!r} failed: {detail}", run_id=run_id, detail=detail)
        self.run_id, self.detail = run_id, detail

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["run_id"], metadata["detail"])


@REGISTRY.specific
class RunCanceled(FlowError):
    reason = "RUN_CANCELED"
    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} was canceled", run_id=run_id)
        self.run_id = run_id

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["run_id"])


@REGISTRY.specific
class FlowTurnTimedOut(FlowError):
    reason = "FLOW_TURN_TIMED_OUT"
    grpc_code = "DEADLINE_EXCEEDED"

    def __init__(self, step_id: str, identity: str, timeout_seconds: float) -> None:
        super().__init__(
            f"step {step_id!r}: the turn on {identity!r} did not finish within "
            f"{timeout_seconds:g} s",
            step_id=step_id,
            identity=identity,
            timeout_seconds=f"{timeout_seconds:g}",
        )
        self.step_id, self.identity, self.timeout_seconds = step_id, identity, timeout_seconds

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["step_id"], metadata["identity"], float(metadata["timeout_seconds"]))


@REGISTRY.specific
class SchemaValidation(FlowError):
    reason = "SCHEMA_VALIDATION"
    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, step_id: str, detail: str) -> None:
        super().__init__(
            f"schema validation failed for step {step_id!r}: {detail}",
            step_id=step_id,
            detail=detail,
        )
        self.step_id, self.detail = step_id, detail

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["step_id"], metadata["detail"])


@REGISTRY.specific
class InsufficientTargets(FlowError):
    reason = "INSUFFICIENT_TARGETS"
    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, step_id: str, required: int, available: int) -> None:
        super().__init__(
            f"insufficient targets for step {step_id!r}: required {required}, "
            f"available {available}",
            step_id=step_id,
            required=required,
            available=available,
        )
        self.step_id, self.required, self.available = step_id, required, available

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["step_id"], int(metadata["required"]), int(metadata["available"]))


@REGISTRY.specific
class FrameDepthLimitExceeded(FlowError):
    reason = "FRAME_DEPTH_LIMIT_EXCEEDED"
    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, step_id: str, max_frame_depth: int, current_depth: int) -> None:
        super().__init__(
            f"step {step_id!r} would exceed max_frame_depth={max_frame_depth} "
            f"(current depth={current_depth})",
            step_id=step_id,
            max_frame_depth=max_frame_depth,
            current_depth=current_depth,
        )
        self.step_id = step_id
        self.max_frame_depth, self.current_depth = max_frame_depth, current_depth

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(
            metadata["step_id"], int(metadata["max_frame_depth"]), int(metadata["current_depth"])
        )


@REGISTRY.specific
class SpecRevisionConflict(FlowError):
    """A run's pinned roster revision is not the one a caller expected."""

    reason = "SPEC_REVISION_CONFLICT"
    grpc_code = "ABORTED"

    def __init__(self, flow_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"flow {flow_id!r}: expected roster revision {expected}, actual {actual}",
            flow_id=flow_id,
            expected=expected,
            actual=actual,
        )
        self.flow_id, self.expected, self.actual = flow_id, expected, actual

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["flow_id"], int(metadata["expected"]), int(metadata["actual"]))


@REGISTRY.specific
class TurnNotFound(FlowError):
    reason = "TURN_NOT_FOUND"
    grpc_code = "NOT_FOUND"

    def __init__(self, turn_id: str) -> None:
        super().__init__(
            f"no turn ticket {turn_id!r} (unknown, or past its retention)", turn_id=turn_id
        )
        self.turn_id = turn_id

    @classmethod
    def from_metadata(cls, message: str, metadata: Metadata) -> Self:
        return cls(metadata["turn_id"])
