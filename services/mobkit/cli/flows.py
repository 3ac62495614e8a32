"""The flow commands: ``flows``, ``run FLOW``, ``runs``, ``cancel RUN``.

``run --follow`` prints the run's events as they happen and exits 0 when the run
succeeds, 1 when it fails or is canceled (its reason and message on stderr).
"""

from __future__ import annotations

import argparse

from mobkit.cli import exit_codes
from mobkit.cli.commands import Run, _command, _label
from mobkit.cli.output import event_line, print_json, table
from mobkit.core import jsontext
from mobkit.core.types import MobStructuralEventEnvelope
from mobkit.flows.definition import (
    FanOutTarget,
    FlowDefinition,
    IdentityTarget,
    SelectorTarget,
    Target,
)
from mobkit.flows.records import RunView
from mobkit.flows.run import RunState

RUN_STATES = [s.value for s in RunState]


def _target(target: Target) -> str:
    if isinstance(target, IdentityTarget):
        return target.identity
    if isinstance(target, SelectorTarget | FanOutTarget):
        labels = ",".join(f"{k}={v}" for k, v in sorted(target.labels.items())) or "*"
        if isinstance(target, SelectorTarget):
            return f"first of {labels}"
        return f"each of {labels} (at least {target.min_targets})"
    return f"flow {target.flow_id}"


def _flow_lines(flow: FlowDefinition) -> list[str]:
    head = flow.flow_id + (f": {flow.description}" if flow.description else "")
    lines = [head]
    for step in flow.steps:
        after = f" after {', '.join(step.depends_on)}" if step.depends_on else ""
        lines.append(f"  {step.step_id}: {_target(step.target)}{after}")
    return lines


async def list_flows(run: Run) -> int:
    flows = await run.mk.flows.list_flows()
    if run.json:
        print_json(flows, run.out)
    else:
        for flow in flows:
            for line in _flow_lines(flow):
                run.print(line)
        run.print(f"{len(flows)} flow{'' if len(flows) == 1 else 's'}")
    return exit_codes.OK


def _run_row(view: RunView) -> list[object]:
    r = view.run
    done = sum(1 for s in r.steps.values() if s.state.value == "succeeded")
    failure = f"{r.failure.reason}: {r.failure.message}" if r.failure else None
    return [
        r.run_id,
        r.flow_id,
        r.state.value,
        f"{done}/{len(view.step_order) or len(r.steps)}",
        failure,
    ]


RUN_HEADERS = ["RUN", "FLOW", "STATE", "STEPS", "FAILURE"]


def _ended(run: Run, view: RunView) -> int:
    if run.json:
        print_json(view, run.out)
    else:
        run.print(table(RUN_HEADERS, [_run_row(view)]))
        for step_id in view.step_order:
            step = view.run.steps.get(step_id)
            if step is None:
                continue
            for identity, result in step.results.items():
                run.print(f"  {step_id} {identity}: {result.output}")
    failure = view.run.failure
    if view.state is RunState.SUCCEEDED or not view.state.terminal:
        return exit_codes.OK
    run.note(
        f"run {view.run_id} {view.state.value}: {failure.reason}: {failure.message}"
        if failure
        else f"run {view.run_id} {view.state.value}"
    )
    return exit_codes.ERROR


async def start(run: Run) -> int:
    a = run.args
    try:
        value = jsontext.decode(a.input) if a.input is not None else None
    except jsontext.NotJson as exc:
        run.note(f"--input is not JSON: {exc}")
        return exit_codes.USAGE
    view = await run.mk.flows.start_run(
        a.flow, value, request_id=a.request_id, labels=dict(a.label or [])
    )
    if not a.follow:
        return _ended(run, view)
    run.note(f"run {view.run_id} of {view.run.flow_id} started")
    final = view
    async for item in run.mk.flows.watch_run(view.run_id):
        if isinstance(item, MobStructuralEventEnvelope):
            if run.json:
                print_json(item, run.out)
            else:
                run.note(event_line(item))
        else:
            final = item
    return _ended(run, final)


async def list_runs(run: Run) -> int:
    a = run.args
    states = [RunState(s) for s in a.state or []]
    views = [
        v
        async for v in run.mk.flows.list_runs(
            flow_id=a.flow, states=states, labels=dict(a.label or [])
        )
    ]
    if run.json:
        print_json(views, run.out)
    else:
        run.print(table(RUN_HEADERS, [_run_row(v) for v in views]))
        run.print(f"{len(views)} run{'' if len(views) == 1 else 's'}")
    return exit_codes.OK


async def cancel(run: Run) -> int:
    view = await run.mk.flows.cancel_run(run.args.run)
    if run.json:
        print_json(view, run.out)
    elif view.state.terminal:
        run.print(f"run {view.run_id} already {view.state.value}")
    else:
        run.print(f"run {view.run_id}: cancel requested")
    return exit_codes.OK


def add_flows(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _command(sub, "flows", list_flows, "the roster's flows and their steps")
    p = _command(sub, "run", start, "start a run of a flow")
    p.add_argument("flow", metavar="FLOW", help="the flow to run, by flow_id (required)")
    p.add_argument("--input", metavar="JSON", help="the run's input, JSON [default: none]")
    p.add_argument(
        "--request-id",
        metavar="ID",
        help="makes the start safe to retry: the same id answers the run it started "
        "[default: none]",
    )
    p.add_argument(
        "--label",
        action="append",
        type=_label,
        metavar="KEY=VALUE",
        help="a label of the run (repeatable) [default: none]",
    )
    p.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="print the run's events until it ends; exit 1 unless it succeeded [default: off]",
    )
    p = _command(sub, "runs", list_runs, "runs, oldest first")
    p.add_argument("--flow", metavar="FLOW", help="only runs of this flow [default: any]")
    p.add_argument(
        "--state",
        action="append",
        choices=RUN_STATES,
        metavar="STATE",
        help=f"only runs in this state (repeatable): {', '.join(RUN_STATES)} [default: any]",
    )
    p.add_argument(
        "--label",
        action="append",
        type=_label,
        metavar="KEY=VALUE",
        help="only runs with this label (repeatable: all must match) [default: any]",
    )
    p = _command(sub, "cancel", cancel, "cancel a run")
    p.add_argument("run", metavar="RUN", help="the run to cancel, by run_id (required)")
