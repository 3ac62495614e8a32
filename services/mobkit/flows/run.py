"""A run of a flow as data, and the pure rules that advance it (sans-I/O).

The owner of a run (the replica holding its lease) keeps a :class:`Run`, asks
:func:`advance` what to do next, carries out the returned :class:`Effect` values
(step turns are ``Dispatch`` calls), feeds each outcome back through
:func:`record_turn`, and checkpoints the run under its fencing token after each
change. Everything here is deterministic in its inputs, so a replica that takes a
run over after a crash computes the same next turns, with the same idempotency
keys, and the orchestrator's receipts answer the turns that already ran.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from mobkit.core.errors import MobKitError
from mobkit.core.types import DurableAgentSpec
from mobkit.flows import templates
from mobkit.flows.definition import (
    FanOutTarget,
    FlowDefinition,
    FlowStep,
    IdentityTarget,
    SelectorTarget,
    SubflowTarget,
    labels_match,
)
from mobkit.flows.errors import (
    FlowFailed,
    InsufficientTargets,
    RunCanceled,
    SchemaValidation,
)


class RunState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self is not RunState.RUNNING


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a step or run failed: a reason of API.md and its message."""

    reason: str
    message: str
    step_id: str | None = None

    @classmethod
    def of(cls, error: MobKitError, step_id: str | None = None) -> Failure:
        return cls(error.reason, error.message, step_id)


@dataclass(frozen=True, slots=True)
class TurnProof:
    """Which session ran a target's turn, under which token, at which checkpoint."""

    session_id: str
    fencing_token: int
    checkpoint_version: int
    output_truncated: bool = False


@dataclass(frozen=True, slots=True)
class TargetResult:
    output: str
    structured_output: Any = None
    proof: TurnProof | None = None


@dataclass(frozen=True, slots=True)
class StepRecord:
    state: StepState = StepState.PENDING
    message: str | None = None
    """The rendered input, fixed when the step starts: a retry or a new owner sends the
    same text."""
    targets: tuple[str, ...] = ()
    attempts: Mapping[str, int] = field(default_factory=dict)
    results: Mapping[str, TargetResult] = field(default_factory=dict)
    failure: Failure | None = None


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str
    flow_id: str
    roster_revision: int
    """The roster revision the run started under: its flow and targets come from it."""
    input: Any
    state: RunState = RunState.RUNNING
    steps: Mapping[str, StepRecord] = field(default_factory=dict)
    failure: Failure | None = None
    depth: int = 0
    origin: str = "flow"
    """The ``DispatchOrigin`` of the run's turns (a run made by a caller may keep its own)."""
    correlation_id: str | None = None
    """Echoed in the turns' receipts; None: the run id."""
    idempotency_key: str | None = None
    """The key of every turn instead of the derived ones: a caller's own key, so the
    idempotency rules of Send apply to a run of one step on one target."""


@dataclass(frozen=True, slots=True)
class StartTurn:
    """Dispatch ``message`` to ``identity``; the key makes a repeat a receipt replay."""

    step_id: str
    identity: str
    message: str
    attempt: int
    idempotency_key: str
    timeout_seconds: float


@dataclass(frozen=True, slots=True)
class StartChildRun:
    step_id: str
    flow_id: str
    input: Any
    run_id: str
    """Derived from the parent's run and step: a new owner finds the same child."""


Effect = StartTurn | StartChildRun


def turn_key(run_id: str, step_id: str, identity: str, attempt: int) -> str:
    return f"flow-run:{run_id}:{step_id}:{identity}:{attempt}"


def child_run_id(run_id: str, step_id: str) -> str:
    return f"{run_id}.{step_id}"


def resolve_targets(step: FlowStep, specs: Sequence[DurableAgentSpec]) -> tuple[str, ...]:
    """The identities a step runs on, from the run's pinned roster."""
    target = step.target
    if isinstance(target, IdentityTarget):
        return (target.identity,) if any(s.identity == target.identity for s in specs) else ()
    if isinstance(target, SubflowTarget):
        return ()
    matching = tuple(s.identity for s in specs if labels_match(target.labels, s.labels))
    if isinstance(target, SelectorTarget):
        return matching[:1]
    return matching


def advance(
    run: Run, flow: FlowDefinition, specs: Sequence[DurableAgentSpec]
) -> tuple[Run, list[Effect]]:
    """Start every step that is ready; the turns (and child runs) to carry out now."""
    if run.state.terminal:
        return run, []
    steps = dict(run.steps)
    effects: list[Effect] = []
    succeeded = {k for k, r in steps.items() if r.state is StepState.SUCCEEDED}
    started = {k for k, r in steps.items() if r.state is not StepState.PENDING}
    for step in flow.ready(succeeded, started):
        record, failure = _start(run, step, steps, specs)
        steps[step.step_id] = record
        if failure is not None:
            return _fail(replace(run, steps=steps), failure), []
    if all(steps.get(s.step_id, StepRecord()).state is StepState.SUCCEEDED for s in flow.steps):
        return replace(run, steps=steps, state=RunState.SUCCEEDED), []
    run = replace(run, steps=steps)
    for step in flow.steps:
        effects.extend(_pending_effects(run, step))
    return run, effects


def _start(
    run: Run, step: FlowStep, steps: Mapping[str, StepRecord], specs: Sequence[DurableAgentSpec]
) -> tuple[StepRecord, Failure | None]:
    try:
        message = _message(run, step, steps)
    except templates.TemplateProblem as exc:
        failure = Failure.of(
            FlowFailed(run.run_id, f"step {step.step_id!r}: {exc.detail}"), step.step_id
        )
        return StepRecord(StepState.FAILED, failure=failure), failure
    if isinstance(step.target, SubflowTarget):
        return StepRecord(StepState.RUNNING, message=message), None
    targets = resolve_targets(step, specs)
    required = step.target.min_targets if isinstance(step.target, FanOutTarget) else 1
    if len(targets) < required:
        failure = Failure.of(
            InsufficientTargets(step.step_id, required, len(targets)), step.step_id
        )
        return StepRecord(StepState.FAILED, failure=failure), failure
    attempts = dict.fromkeys(targets, 1)
    return StepRecord(StepState.RUNNING, message, targets, attempts), None


def _pending_effects(run: Run, step: FlowStep) -> list[Effect]:
    record = run.steps.get(step.step_id)
    if record is None or record.state is not StepState.RUNNING:
        return []
    assert record.message is not None
    if isinstance(step.target, SubflowTarget):
        return [
            StartChildRun(
                step.step_id,
                step.target.flow_id,
                _child_input(record.message),
                child_run_id(run.run_id, step.step_id),
            )
        ]
    return [
        StartTurn(
            step.step_id,
            identity,
            record.message,
            record.attempts[identity],
            run.idempotency_key
            or turn_key(run.run_id, step.step_id, identity, record.attempts[identity]),
            step.timeout_seconds,
        )
        for identity in record.targets
        if identity not in record.results
    ]


def _child_input(message: str) -> Any:
    try:
        return json.loads(message)
    except ValueError:
        return message


def _message(run: Run, step: FlowStep, steps: Mapping[str, StepRecord]) -> str:
    visible = {k: step_view(r) for k, r in steps.items() if r.state is StepState.SUCCEEDED}
    if step.input_template is not None:
        return templates.render(step.input_template, input=run.input, steps=visible)
    if not step.depends_on:
        return run.input if isinstance(run.input, str) else json.dumps(run.input)
    return json.dumps({d: visible[d]["output"] for d in step.depends_on}, ensure_ascii=False)


def step_view(record: StepRecord) -> dict[str, Any]:
    """What templates see of a finished step (``steps.<id>``): results in target order
    (roster order), whatever order the turns finished in."""
    order = [t for t in record.targets if t in record.results]
    order += [t for t in record.results if t not in order]  # a nested run's id
    results = [
        {
            "identity": i,
            "output": record.results[i].output,
            "structured_output": record.results[i].structured_output,
        }
        for i in order
    ]
    if len(record.targets) == 1 and len(results) == 1:
        only = results[0]
        return {
            "output": only["output"],
            "structured_output": only["structured_output"],
            "results": results,
        }
    return {
        "output": [r["output"] for r in results],
        "structured_output": [r["structured_output"] for r in results],
        "results": results,
    }


@dataclass(frozen=True, slots=True)
class TurnDone:
    output: str
    structured_output: Any = None
    proof: TurnProof | None = None


@dataclass(frozen=True, slots=True)
class TurnError:
    error: MobKitError


def record_turn(
    run: Run, flow: FlowDefinition, step_id: str, identity: str, outcome: TurnDone | TurnError
) -> tuple[Run, float | None]:
    """Fold one turn's outcome into the run. Returns the run and, when the turn is to be
    retried, the backoff before its next attempt (its StartTurn comes from
    :func:`advance`)."""
    record = run.steps.get(step_id)
    if run.state.terminal or record is None or record.state is not StepState.RUNNING:
        return run, None
    if identity in record.results:
        return run, None
    step = flow.step(step_id)
    if isinstance(outcome, TurnDone):
        problem = schema_problem(step, outcome)
        if problem is None:
            results = {
                **record.results,
                identity: TargetResult(outcome.output, outcome.structured_output, outcome.proof),
            }
            done = len(results) == len(record.targets)
            state = StepState.SUCCEEDED if done else StepState.RUNNING
            return _with_step(run, step_id, replace(record, results=results, state=state)), None
        error: MobKitError = SchemaValidation(step_id, problem)
    else:
        error = outcome.error
    attempt = record.attempts[identity]
    if attempt < step.retry.max_attempts and step.retry.retries(error.reason):
        attempts = {**record.attempts, identity: attempt + 1}
        return _with_step(run, step_id, replace(record, attempts=attempts)), step.retry.backoff(
            attempt + 1
        )
    failure = Failure.of(error, step_id)
    failed = _with_step(run, step_id, replace(record, state=StepState.FAILED, failure=failure))
    return _fail(failed, failure), None


def record_child(run: Run, step_id: str, child: Run) -> Run:
    """Fold a finished child run into its parent's step."""
    record = run.steps.get(step_id)
    if run.state.terminal or record is None or record.state is not StepState.RUNNING:
        return run
    if child.state is RunState.SUCCEEDED:
        output = json.dumps(
            {k: step_view(r)["output"] for k, r in child.steps.items()}, ensure_ascii=False
        )
        result = TargetResult(output, {k: step_view(r) for k, r in child.steps.items()})
        return _with_step(
            run,
            step_id,
            replace(
                record,
                state=StepState.SUCCEEDED,
                results={child.run_id: result},
                targets=(child.run_id,),
            ),
        )
    failure = child.failure or Failure(
        "FLOW_FAILED", f"child run {child.run_id} ended {child.state}", step_id
    )
    failure = replace(failure, step_id=step_id)
    return _fail(
        _with_step(run, step_id, replace(record, state=StepState.FAILED, failure=failure)), failure
    )


def cancel(run: Run) -> Run:
    """Cancel a running run: its running steps end Canceled (a turn already sent may still
    finish on its identity; its result is not recorded)."""
    if run.state.terminal:
        return run
    return _end(run, RunState.CANCELED, Failure.of(RunCanceled(run.run_id)))


def schema_problem(step: FlowStep, outcome: TurnDone) -> str | None:
    """Why a turn's output does not satisfy its step's schema, or None.

    The value checked is the structured output when the turn gave one, else the reply
    parsed as JSON when it parses, else the reply as a JSON string.
    """
    if step.output_schema is None:
        return None
    value = outcome.structured_output
    if value is None:
        try:
            value = json.loads(outcome.output)
        except ValueError:
            value = outcome.output
    error = best_match(Draft202012Validator(step.output_schema).iter_errors(value))
    if error is None:
        return None
    where = "".join(f"[{p!r}]" for p in error.absolute_path)
    return f"{error.message}" + (f" at output{where}" if where else "")


def _with_step(run: Run, step_id: str, record: StepRecord) -> Run:
    return replace(run, steps={**run.steps, step_id: record})


def _fail(run: Run, failure: Failure) -> Run:
    return _end(run, RunState.FAILED, failure)


def _end(run: Run, state: RunState, failure: Failure) -> Run:
    """The run ended ``state``: steps still running are canceled."""
    steps = {
        k: replace(r, state=StepState.CANCELED) if r.state is StepState.RUNNING else r
        for k, r in run.steps.items()
    }
    return replace(run, steps=steps, state=state, failure=failure)
