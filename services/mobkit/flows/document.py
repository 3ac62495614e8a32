"""``[[flows]]`` of a roster document: parsing and validation.

Called by :mod:`mobkit.roster.document` with the document's identities, so one
``mobkit roster validate`` names every problem of agents and flows together. Each
problem names its flow (``flows[1]``) and field (``steps[0].depends_on``)::

    [[flows]]
    flow_id = "ask-team"
    description = "Workers answer, the coordinator summarises."

    [[flows.steps]]
    step_id = "answer"
    fan_out = { labels = { role = "worker" }, min_targets = 2 }
    input = "Question: {{ input.question }}"
    timeout_seconds = 60
    retry = { max_attempts = 3, initial_backoff_seconds = 1 }

    [[flows.steps]]
    step_id = "summarise"
    depends_on = ["answer"]
    identity = "coordinator"          # or selector = { labels = {...} }, or flow = "other"
    input = "Summarise: {{ steps.answer.output }}"
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from mobkit.core.identity import AgentIdentity, identity_problem
from mobkit.flows import templates
from mobkit.flows.definition import (
    FanOutTarget,
    FlowDefinition,
    FlowStep,
    IdentityTarget,
    RetryPolicy,
    SelectorTarget,
    SubflowTarget,
    Target,
    ancestors,
    find_cycle,
)

FLOW_KEYS = frozenset({"flow_id", "description", "labels", "input_schema", "steps"})
STEP_KEYS = frozenset(
    {
        "step_id",
        "depends_on",
        "identity",
        "selector",
        "fan_out",
        "flow",
        "input",
        "output_schema",
        "timeout_seconds",
        "retry",
    }
)
TARGET_KEYS = ("identity", "selector", "fan_out", "flow")
RETRY_KEYS = frozenset({"max_attempts", "initial_backoff_seconds", "max_backoff_seconds", "on"})
MAX_STEPS = 256
MAX_TIMEOUT_SECONDS = 86_400.0
MAX_ATTEMPTS = 10_000
MAX_BACKOFF_SECONDS = 3_600.0
MAX_MIN_TARGETS = 10_000

Report = Callable[..., None]
"""``report(detail, entry=..., field=...)``: records one problem of the document."""


def parse_flows(
    value: Any, identities: Sequence[AgentIdentity], report: Report
) -> tuple[FlowDefinition, ...]:
    """The valid flows of ``value`` (the document's ``flows``); every problem reported."""
    if not isinstance(value, list):
        report("must be an array of tables ([[flows]])", field="flows")
        return ()
    raws: list[tuple[str, Mapping[str, Any]]] = []
    for index, raw in enumerate(value):
        if isinstance(raw, Mapping):
            raws.append((f"flows[{index}]", raw))
        else:
            report("must be a table", entry=f"flows[{index}]")
    ids = {r.get("flow_id") for _, r in raws if isinstance(r.get("flow_id"), str)}
    known = frozenset(identities)
    flows: list[FlowDefinition] = []
    seen: dict[str, str] = {}
    for entry, raw in raws:
        flow_id = raw.get("flow_id")
        if isinstance(flow_id, str) and flow_id in seen:
            report(
                f"duplicate flow_id {flow_id!r} (first used by {seen[flow_id]})",
                entry=entry,
                field="flow_id",
            )
            continue
        if isinstance(flow_id, str):
            seen[flow_id] = entry
        flow = _flow(raw, entry, known, ids, report)
        if flow is not None:
            flows.append(flow)
    _check_nesting(flows, raws, report)
    return tuple(flows)


def _check_nesting(
    flows: Sequence[FlowDefinition], raws: Sequence[tuple[str, Mapping[str, Any]]], report: Report
) -> None:
    graph = {f.flow_id: tuple(f.subflows()) for f in flows}
    cycle = find_cycle(graph)
    if cycle is not None:
        entry = next(e for e, r in raws if r.get("flow_id") == cycle[0])
        report(
            f"flows run each other in a cycle ({' -> '.join(cycle)}): it could never finish",
            entry=entry,
            field="steps",
        )


def _flow(
    raw: Mapping[str, Any],
    entry: str,
    identities: frozenset[AgentIdentity],
    flow_ids: set[Any],
    report: Report,
) -> FlowDefinition | None:
    problems: list[str] = []

    def fail(field: str, detail: str) -> None:
        problems.append(field)
        report(detail, entry=entry, field=field)

    flow_id = _keys_and_id(raw, FLOW_KEYS, "flow_id", fail)
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        fail("description", "must be a string")
    labels = _labels(raw.get("labels", {}), "labels", fail)
    input_schema = _schema(raw.get("input_schema"), "input_schema", fail)
    steps_raw = raw.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        fail("steps", "must be a non-empty array of tables ([[flows.steps]])")
        steps_raw = []
    elif len(steps_raw) > MAX_STEPS:
        fail("steps", f"at most {MAX_STEPS} steps")
    steps = _steps(steps_raw, identities, flow_ids, fail)
    if problems:
        return None
    assert isinstance(flow_id, str)
    return FlowDefinition(
        flow_id=flow_id,
        steps=steps,
        description=description,
        input_schema=input_schema,
        labels=labels,
    )


def _steps(
    raws: list[Any],
    identities: frozenset[AgentIdentity],
    flow_ids: set[Any],
    fail: Callable[[str, str], None],
) -> tuple[FlowStep, ...]:
    ids = [r.get("step_id") if isinstance(r, Mapping) else None for r in raws]
    graph: dict[str, tuple[str, ...]] = {}
    steps: list[FlowStep] = []
    indices: list[int] = []
    seen: set[str] = set()
    for index, raw in enumerate(raws):
        where = f"steps[{index}]"
        if not isinstance(raw, Mapping):
            fail(where, "must be a table")
            continue
        step_id = raw.get("step_id")
        if isinstance(step_id, str) and step_id in seen:
            fail(f"{where}.step_id", f"duplicate step_id {step_id!r}")
            continue
        if isinstance(step_id, str):
            seen.add(step_id)
        step = _step(raw, where, ids, identities, flow_ids, fail)
        if step is not None:
            graph[step.step_id] = step.depends_on
            steps.append(step)
            indices.append(index)
    cycle = find_cycle(graph)
    if cycle is not None:
        fail("steps", f"depends_on forms a cycle ({' -> '.join(cycle)}): steps must form a DAG")
        return tuple(steps)
    for index, step in zip(indices, steps, strict=True):
        if step.input_template is None:
            continue
        before = ancestors(graph, step.step_id)
        for named in sorted(templates.check(step.input_template) - before):
            fail(
                f"steps[{index}].input",
                f"refers to step {named!r}, which step {step.step_id!r} does not depend on",
            )
    return tuple(steps)


def _step(
    raw: Mapping[str, Any],
    where: str,
    step_ids: list[Any],
    identities: frozenset[AgentIdentity],
    flow_ids: set[Any],
    fail: Callable[[str, str], None],
) -> FlowStep | None:
    count = 0

    def problem(field: str, detail: str) -> None:
        nonlocal count
        count += 1
        fail(f"{where}.{field}", detail)

    step_id = _keys_and_id(raw, STEP_KEYS, "step_id", problem)
    depends_on = raw.get("depends_on", [])
    if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
        problem("depends_on", "must be an array of step ids")
        depends_on = []
    for dep in depends_on:
        if dep == step_id:
            problem("depends_on", f"step {dep!r} cannot depend on itself")
        elif dep not in step_ids:
            problem("depends_on", f"unknown step {dep!r}")
    target = _target(raw, identities, flow_ids, problem)
    template = raw.get("input")
    if template is not None:
        if not isinstance(template, str):
            problem("input", "must be a string (a template)")
        else:
            try:
                templates.check(template)
            except templates.TemplateProblem as exc:
                problem("input", exc.detail)
    schema = _schema(raw.get("output_schema"), f"{where}.output_schema", fail)
    timeout = _number(
        raw.get("timeout_seconds"),
        "timeout_seconds",
        300.0,
        MAX_TIMEOUT_SECONDS,
        problem,
        positive=True,
    )
    retry = _retry(raw.get("retry"), problem)
    if count or target is None:
        return None
    assert isinstance(step_id, str)
    return FlowStep(
        step_id=step_id,
        target=target,
        depends_on=tuple(dict.fromkeys(depends_on)),
        input_template=template,
        output_schema=schema,
        timeout_seconds=timeout,
        retry=retry,
    )


def _keys_and_id(
    raw: Mapping[str, Any], keys: frozenset[str], id_field: str, fail: Callable[[str, str], None]
) -> str | None:
    """Reports unknown keys and a missing or malformed id; the id when it is valid."""
    for key in raw:
        if key not in keys:
            fail(str(key), f"unknown field {key!r}")
    value = raw.get(id_field)
    if not isinstance(value, str):
        fail(id_field, "is required (a string)")
        return None
    if (problem := identity_problem(value)) is not None:
        fail(id_field, f"invalid {id_field} {value!r}: {problem}")
        return None
    return value


def _target(
    raw: Mapping[str, Any],
    identities: frozenset[AgentIdentity],
    flow_ids: set[Any],
    problem: Callable[[str, str], None],
) -> Target | None:
    given = [k for k in TARGET_KEYS if k in raw]
    if len(given) != 1:
        listed = ", ".join(given) if given else "none"
        problem(
            "identity",
            f"needs exactly one target of identity, selector, fan_out, flow (given: {listed})",
        )
        return None
    key = given[0]
    value = raw[key]
    if key == "identity":
        if not isinstance(value, str) or value not in identities:
            problem("identity", f"unknown identity {value!r} (not in this roster's agents)")
            return None
        return IdentityTarget(AgentIdentity(value))
    if key == "flow":
        if not isinstance(value, str) or value not in flow_ids:
            problem("flow", f"unknown flow {value!r}")
            return None
        return SubflowTarget(value)
    if not isinstance(value, Mapping):
        problem(key, "must be a table (labels = { ... })")
        return None
    allowed = {"labels"} if key == "selector" else {"labels", "min_targets"}
    for extra in set(value) - allowed:
        problem(f"{key}.{extra}", f"unknown field {extra!r}")
    labels = _labels(value.get("labels", {}), f"{key}.labels", problem)
    if key == "selector":
        return SelectorTarget(labels)
    min_targets = value.get("min_targets", 1)
    if (
        isinstance(min_targets, bool)
        or not isinstance(min_targets, int)
        or not 1 <= min_targets <= MAX_MIN_TARGETS
    ):
        problem(f"{key}.min_targets", f"must be an integer from 1 to {MAX_MIN_TARGETS}")
        return None
    return FanOutTarget(labels, min_targets)


def _labels(value: Any, field: str, fail: Callable[[str, str], None]) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        fail(field, "must be a table of strings")
        return {}
    return dict(value)


def _schema(value: Any, field: str, fail: Callable[[str, str], None]) -> Any:
    if value is None:
        return None
    if not isinstance(value, (Mapping, bool)):
        fail(field, "must be a JSON Schema (a table)")
        return None
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        fail(field, f"not a valid JSON Schema (2020-12): {exc.message}")
        return None
    return copy.deepcopy(value)


def _number(
    value: Any,
    field: str,
    default: float,
    maximum: float,
    problem: Callable[[str, str], None],
    *,
    positive: bool = False,
) -> float:
    if value is None:
        return default
    low_ok = (value > 0) if positive else (value >= 0)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not low_ok
        or value > maximum
    ):
        bound = "above 0" if positive else "at least 0"
        problem(field, f"must be a number {bound} and at most {maximum:g}")
        return default
    return float(value)


def _retry(value: Any, problem: Callable[[str, str], None]) -> RetryPolicy:
    if value is None:
        return RetryPolicy()
    if not isinstance(value, Mapping):
        problem(
            "retry", "must be a table (max_attempts, initial_backoff_seconds, max_backoff_seconds)"
        )
        return RetryPolicy()
    for extra in set(value) - RETRY_KEYS:
        problem(f"retry.{extra}", f"unknown field {extra!r}")
    attempts = value.get("max_attempts", 1)
    if (
        isinstance(attempts, bool)
        or not isinstance(attempts, int)
        or not 1 <= attempts <= MAX_ATTEMPTS
    ):
        problem("retry.max_attempts", f"must be an integer from 1 to {MAX_ATTEMPTS}")
        attempts = 1
    initial = _number(
        value.get("initial_backoff_seconds"),
        "retry.initial_backoff_seconds",
        1.0,
        MAX_BACKOFF_SECONDS,
        problem,
    )
    cap = _number(
        value.get("max_backoff_seconds"),
        "retry.max_backoff_seconds",
        max(30.0, initial),
        MAX_BACKOFF_SECONDS,
        problem,
    )
    if cap < initial:
        problem("retry.max_backoff_seconds", "must be at least initial_backoff_seconds")
    on = value.get("on")
    reasons: frozenset[str] | None = None
    if on is not None:
        if not isinstance(on, list) or not all(isinstance(r, str) and r for r in on):
            problem("retry.on", 'must be an array of failure reasons (e.g. ["NOT_ACTIVE"])')
        else:
            reasons = frozenset(on)
    return RetryPolicy(attempts, initial, cap, reasons)


def flow_to_entry(flow: FlowDefinition) -> dict[str, Any]:
    """The document form of a flow (the inverse of parsing it), defaults omitted."""
    out: dict[str, Any] = {"flow_id": flow.flow_id}
    if flow.description is not None:
        out["description"] = flow.description
    if flow.labels:
        out["labels"] = dict(flow.labels)
    if flow.input_schema is not None:
        out["input_schema"] = flow.input_schema
    out["steps"] = [_step_to_entry(s) for s in flow.steps]
    return out


def _step_to_entry(step: FlowStep) -> dict[str, Any]:
    out: dict[str, Any] = {"step_id": step.step_id}
    if step.depends_on:
        out["depends_on"] = list(step.depends_on)
    target = step.target
    if isinstance(target, IdentityTarget):
        out["identity"] = target.identity
    elif isinstance(target, SubflowTarget):
        out["flow"] = target.flow_id
    elif isinstance(target, SelectorTarget):
        out["selector"] = {"labels": dict(target.labels)}
    else:
        out["fan_out"] = {"labels": dict(target.labels), "min_targets": target.min_targets}
    if step.input_template is not None:
        out["input"] = step.input_template
    if step.output_schema is not None:
        out["output_schema"] = step.output_schema
    if step.timeout_seconds != FlowStep.__dataclass_fields__["timeout_seconds"].default:
        out["timeout_seconds"] = step.timeout_seconds
    if step.retry != RetryPolicy():
        out["retry"] = {
            "max_attempts": step.retry.max_attempts,
            "initial_backoff_seconds": step.retry.initial_backoff_seconds,
            "max_backoff_seconds": step.retry.max_backoff_seconds,
        }
        if step.retry.on is not None:
            out["retry"]["on"] = sorted(step.retry.on)
    return out
