"""Proto <-> domain for ``mobkit.flows.v1``: flows, runs and their filters."""

from __future__ import annotations

from typing import Any

from mobkit.core import jsontext, page_token
from mobkit.core.errors import InvalidArgument
from mobkit.flows.definition import (
    FanOutTarget,
    FlowDefinition,
    FlowStep,
    IdentityTarget,
    SelectorTarget,
)
from mobkit.flows.engine import RunFilter
from mobkit.flows.records import RunRecord
from mobkit.flows.run import Failure, RunState, StepState
from mobkit.gen.flows.v1 import flows_pb2 as pb
from mobkit.gen.flows.v1 import flows_service_pb2 as svc
from mobkit.wire.json import get_json

RUN_STATES = {
    RunState.RUNNING: pb.RUN_STATE_RUNNING,
    RunState.SUCCEEDED: pb.RUN_STATE_SUCCEEDED,
    RunState.FAILED: pb.RUN_STATE_FAILED,
    RunState.CANCELED: pb.RUN_STATE_CANCELED,
}
RUN_STATES_BACK = {int(v): k for k, v in RUN_STATES.items()}
STEP_STATES = {
    StepState.PENDING: pb.STEP_STATE_PENDING,
    StepState.RUNNING: pb.STEP_STATE_RUNNING,
    StepState.SUCCEEDED: pb.STEP_STATE_SUCCEEDED,
    StepState.FAILED: pb.STEP_STATE_FAILED,
    StepState.CANCELED: pb.STEP_STATE_CANCELED,
}
_RUNS_AFTER = "runs-after:"
_NOT_OURS = "not a token returned by ListRuns"


def flow_to_proto(flow: FlowDefinition) -> pb.Flow:
    return pb.Flow(
        flow_id=flow.flow_id,
        description=flow.description or "",
        labels=dict(flow.labels),
        steps=[_step_to_proto(s) for s in flow.steps],
        input_schema_json=_text(flow.input_schema),
    )


def _step_to_proto(step: FlowStep) -> pb.FlowStep:
    msg = pb.FlowStep(
        step_id=step.step_id,
        depends_on=list(step.depends_on),
        input_template=step.input_template or "",
        output_schema_json=_text(step.output_schema),
        timeout_seconds=step.timeout_seconds,
        retry=pb.RetryPolicy(
            max_attempts=step.retry.max_attempts,
            initial_backoff_seconds=step.retry.initial_backoff_seconds,
            max_backoff_seconds=step.retry.max_backoff_seconds,
        ),
    )
    target = step.target
    if isinstance(target, IdentityTarget):
        msg.identity = target.identity
    elif isinstance(target, SelectorTarget):
        msg.selector.labels.update(target.labels)
    elif isinstance(target, FanOutTarget):
        msg.fan_out.selector.labels.update(target.labels)
        msg.fan_out.min_targets = target.min_targets
    else:
        msg.flow = target.flow_id
    return msg


def _text(value: Any) -> str:
    return "" if value is None else jsontext.encode(value)


def _failure(failure: Failure | None) -> pb.RunFailure | None:
    if failure is None:
        return None
    return pb.RunFailure(
        reason=failure.reason, message=failure.message, step_id=failure.step_id or ""
    )


def run_to_proto(record: RunRecord) -> pb.Run:
    run = record.run
    msg = pb.Run(
        run_id=run.run_id,
        flow_id=run.flow_id,
        state=RUN_STATES[run.state],
        roster_revision=run.roster_revision,
        input_json=jsontext.encode(run.input),
        labels=dict(record.labels),
        created_at_ms=record.created_ms,
        updated_at_ms=record.updated_ms,
        request_id=record.request_id or "",
        depth=run.depth,
    )
    if record.parent is not None:
        msg.parent_run_id, msg.parent_step_id = record.parent.run_id, record.parent.step_id
    if (failure := _failure(run.failure)) is not None:
        msg.failure.CopyFrom(failure)
    order = [s.step_id for f in record.flows[:1] for s in f.steps]
    for step_id in sorted(run.steps, key=lambda s: order.index(s) if s in order else len(order)):
        step = run.steps[step_id]
        out = msg.steps.add(
            step_id=step_id,
            state=STEP_STATES[step.state],
            message=step.message or "",
            targets=list(step.targets),
            attempts=dict(step.attempts),
        )
        for identity, result in step.results.items():
            out.results.add(
                identity=identity,
                output=result.output,
                structured_output_json=_text(result.structured_output),
            )
        if (step_failure := _failure(step.failure)) is not None:
            out.failure.CopyFrom(step_failure)
    return msg


def start_input(request: svc.StartRunRequest) -> Any:
    return get_json(request, "input")


def run_filter(request: svc.ListRunsRequest) -> RunFilter:
    states = set()
    for value in request.states:
        if int(value) not in RUN_STATES_BACK:
            raise InvalidArgument("states", f"unknown run state {value}")
        states.add(RUN_STATES_BACK[int(value)])
    return RunFilter(request.flow_id or None, frozenset(states), dict(request.labels))


def runs_page_token(after: str) -> str:
    return page_token.encode(_RUNS_AFTER + after) if after else ""


def runs_page_after(token: str) -> str:
    if not token:
        return ""
    payload = page_token.decode(token, _NOT_OURS)
    if not payload.startswith(_RUNS_AFTER):
        raise InvalidArgument("page_token", _NOT_OURS)
    return payload[len(_RUNS_AFTER) :]
