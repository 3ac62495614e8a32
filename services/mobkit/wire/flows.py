"""Proto <-> domain for ``mobkit.flows.v1``: flows, runs and their filters."""

from __future__ import annotations

from typing import Any

from mobkit.core import jsontext, page_token
from mobkit.core.errors import InvalidArgument
from mobkit.core.identity import AgentIdentity
from mobkit.flows.definition import (
    FanOutTarget,
    FlowDefinition,
    FlowStep,
    IdentityTarget,
    RetryPolicy,
    SelectorTarget,
    SubflowTarget,
    Target,
)
from mobkit.flows.engine import RunFilter
from mobkit.flows.records import Parent, RunView
from mobkit.flows.run import (
    Failure,
    Run,
    RunState,
    StepRecord,
    StepState,
    TargetResult,
    TurnProof,
)
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
STEP_STATES: dict[StepState, pb.StepState.ValueType] = {
    StepState.PENDING: pb.STEP_STATE_PENDING,
    StepState.RUNNING: pb.STEP_STATE_RUNNING,
    StepState.SUCCEEDED: pb.STEP_STATE_SUCCEEDED,
    StepState.FAILED: pb.STEP_STATE_FAILED,
    StepState.CANCELED: pb.STEP_STATE_CANCELED,
}
STEP_STATES_BACK = {int(v): k for k, v in STEP_STATES.items()}
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


def run_to_proto(record: RunView) -> pb.Run:
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
    order = list(record.step_order)
    for step_id in sorted(run.steps, key=lambda s: order.index(s) if s in order else len(order)):
        step = run.steps[step_id]
        out = msg.steps.add(
            step_id=step_id,
            state=STEP_STATES[step.state],
            message=step.message or "",
            targets=list(step.targets),
            attempts=dict(step.attempts),
        )
        ordered = [t for t in step.targets if t in step.results]
        ordered += [t for t in step.results if t not in ordered]
        for identity in ordered:
            result = step.results[identity]
            item = out.results.add(
                identity=identity,
                output=result.output,
                structured_output_json=_text(result.structured_output),
            )
            if (proof := result.proof) is not None:
                item.session_id = proof.session_id
                item.fencing_token = proof.fencing_token
                item.checkpoint_version = proof.checkpoint_version
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


# -- back to domain (the clients) ------------------------------------------------------


def _json(text: str, where: str) -> Any:
    if not text:
        return None
    try:
        return jsontext.decode(text)
    except jsontext.NotJson as exc:
        raise InvalidArgument(where, str(exc)) from None


def flow_from_proto(msg: pb.Flow) -> FlowDefinition:
    return FlowDefinition(
        flow_id=msg.flow_id,
        steps=tuple(_step_from_proto(s) for s in msg.steps),
        description=msg.description or None,
        input_schema=_json(msg.input_schema_json, "input_schema_json"),
        labels=dict(msg.labels),
    )


def _step_from_proto(msg: pb.FlowStep) -> FlowStep:
    which = msg.WhichOneof("target")
    target: Target
    if which == "identity":
        target = IdentityTarget(AgentIdentity(msg.identity))
    elif which == "selector":
        target = SelectorTarget(dict(msg.selector.labels))
    elif which == "fan_out":
        target = FanOutTarget(dict(msg.fan_out.selector.labels), msg.fan_out.min_targets)
    else:
        target = SubflowTarget(msg.flow)
    return FlowStep(
        step_id=msg.step_id,
        target=target,
        depends_on=tuple(msg.depends_on),
        input_template=msg.input_template or None,
        output_schema=_json(msg.output_schema_json, "output_schema_json"),
        timeout_seconds=msg.timeout_seconds,
        retry=RetryPolicy(
            msg.retry.max_attempts, msg.retry.initial_backoff_seconds, msg.retry.max_backoff_seconds
        ),
    )


def _failure_from_proto(msg: pb.RunFailure) -> Failure:
    return Failure(msg.reason, msg.message, msg.step_id or None)


def run_from_proto(msg: pb.Run) -> RunView:
    steps = {
        s.step_id: StepRecord(
            state=STEP_STATES_BACK.get(int(s.state), StepState.PENDING),
            message=s.message or None,
            targets=tuple(s.targets),
            attempts=dict(s.attempts),
            results={
                r.identity: TargetResult(
                    r.output,
                    _json(r.structured_output_json, "results"),
                    TurnProof(r.session_id, r.fencing_token, r.checkpoint_version)
                    if r.session_id
                    else None,
                )
                for r in s.results
            },
            failure=_failure_from_proto(s.failure) if s.HasField("failure") else None,
        )
        for s in msg.steps
    }
    run = Run(
        run_id=msg.run_id,
        flow_id=msg.flow_id,
        roster_revision=msg.roster_revision,
        input=_json(msg.input_json, "input_json"),
        state=RUN_STATES_BACK.get(int(msg.state), RunState.RUNNING),
        steps=steps,
        failure=_failure_from_proto(msg.failure) if msg.HasField("failure") else None,
        depth=msg.depth,
    )
    parent = Parent(msg.parent_run_id, msg.parent_step_id) if msg.parent_run_id else None
    return RunView(
        run,
        msg.created_at_ms,
        msg.updated_at_ms,
        msg.request_id or None,
        dict(msg.labels),
        parent,
        tuple(s.step_id for s in msg.steps),
    )
