"""The pure rules of a run: which turns start, with which keys, and how outcomes fold in."""

from __future__ import annotations

import json

from test_flow_document import AGENTS, ASK_TEAM

from mobkit.core.errors import NotActive
from mobkit.flows.run import (
    Run,
    RunState,
    StartChildRun,
    StartTurn,
    StepState,
    TurnDone,
    TurnError,
    advance,
    cancel,
    record_child,
    record_turn,
    turn_key,
)
from mobkit.roster.document import parse_roster_toml

DOC = parse_roster_toml(AGENTS + ASK_TEAM)
FLOW = DOC.flows[0]
SPECS = DOC.specs


def start(input: object = None) -> tuple[Run, list]:
    run = Run("r1", FLOW.flow_id, 3, {"question": "why?"} if input is None else input)
    return advance(run, FLOW, SPECS)


def test_a_run_walks_its_dag_and_passes_outputs_between_steps() -> None:
    run, effects = start()
    assert effects == [
        StartTurn(
            "frame",
            "coordinator",
            "Frame the question: why?",
            1,
            turn_key("r1", "frame", "coordinator", 1),
            300.0,
        )
    ]
    run, _ = record_turn(run, FLOW, "frame", "coordinator", TurnDone("WHY?"))
    run, effects = advance(run, FLOW, SPECS)
    assert [(e.step_id, e.identity, e.message) for e in effects] == [
        ("answer", "worker-1", "WHY?"),
        ("answer", "worker-2", "WHY?"),
    ]
    run, _ = record_turn(run, FLOW, "answer", "worker-2", TurnDone("no"))
    run, effects = advance(run, FLOW, SPECS)
    assert [e.identity for e in effects] == ["worker-1"]  # only what is still owed
    run, _ = record_turn(run, FLOW, "answer", "worker-1", TurnDone("yes"))
    run, effects = advance(run, FLOW, SPECS)
    (summary,) = effects
    assert summary.identity == "coordinator"  # the selector's first match in roster order
    # In target (roster) order, although worker-2 answered first.
    assert summary.message == 'Summarise ["yes", "no"] for WHY?'
    run, _ = record_turn(run, FLOW, "summarise", "coordinator", TurnDone('"both"'))
    run, effects = advance(run, FLOW, SPECS)
    assert run.state is RunState.SUCCEEDED and effects == []


def test_the_same_run_gives_the_same_turns_and_keys_to_a_new_owner() -> None:
    run, effects = start()
    again, effects_again = advance(run, FLOW, SPECS)
    assert effects_again == effects and again == run


def test_a_failed_turn_is_retried_with_a_new_key_then_fails_the_run() -> None:
    run, _ = start()
    run, _ = record_turn(run, FLOW, "frame", "coordinator", TurnDone("q"))
    run, _ = advance(run, FLOW, SPECS)
    error = TurnError(NotActive("worker-1", "dormant"))
    backoffs = []
    for _ in range(2):
        run, backoff = record_turn(run, FLOW, "answer", "worker-1", error)
        backoffs.append(backoff)
        run, effects = advance(run, FLOW, SPECS)
    assert backoffs == [0.5, 1.0]
    assert [e.attempt for e in effects if e.identity == "worker-1"] == [3]
    assert turn_key("r1", "answer", "worker-1", 3) in {e.idempotency_key for e in effects}
    run, backoff = record_turn(run, FLOW, "answer", "worker-1", error)
    assert backoff is None
    assert run.state is RunState.FAILED
    assert run.failure is not None and run.failure.reason == "NOT_ACTIVE"
    assert run.failure.step_id == "answer"


def test_an_output_against_the_schema_fails_with_schema_validation() -> None:
    run, _ = start()
    run, _ = record_turn(run, FLOW, "frame", "coordinator", TurnDone("q"))
    run, _ = advance(run, FLOW, SPECS)
    for worker in ("worker-1", "worker-2"):
        run, _ = record_turn(run, FLOW, "answer", worker, TurnDone("a"))
    run, _ = advance(run, FLOW, SPECS)
    run, _ = record_turn(run, FLOW, "summarise", "coordinator", TurnDone("{}", {"not": "a string"}))
    assert run.state is RunState.FAILED
    assert run.failure is not None
    assert run.failure.reason == "SCHEMA_VALIDATION"
    assert "{'not': 'a string'} is not of type 'string'" in run.failure.message


def test_too_few_targets_fail_before_any_turn() -> None:
    specs = [s for s in SPECS if s.identity != "worker-2"]
    run, _ = start()
    run, _ = record_turn(run, FLOW, "frame", "coordinator", TurnDone("q"))
    run, effects = advance(run, FLOW, specs)
    assert effects == []
    assert run.state is RunState.FAILED
    assert run.failure is not None and run.failure.reason == "INSUFFICIENT_TARGETS"
    assert run.failure.message == "insufficient targets for step 'answer': required 2, available 1"


def test_a_template_that_cannot_render_fails_the_run_naming_the_step() -> None:
    run, _ = start(input={"no-question": 1})
    assert run.state is RunState.FAILED
    assert run.failure is not None and run.failure.reason == "FLOW_FAILED"
    assert "step 'frame'" in run.failure.message and "question" in run.failure.message


def test_cancel_stops_running_steps_and_late_results_are_ignored() -> None:
    run, _ = start()
    run = cancel(run)
    assert run.state is RunState.CANCELED and run.steps["frame"].state is StepState.CANCELED
    late, _ = record_turn(run, FLOW, "frame", "coordinator", TurnDone("late"))
    assert late == run
    assert advance(run, FLOW, SPECS) == (run, [])


def test_a_nested_flow_step_starts_a_child_run_and_takes_its_outputs() -> None:
    doc = parse_roster_toml(
        AGENTS
        + ASK_TEAM
        + '[[flows]]\nflow_id = "outer"\n[[flows.steps]]\nstep_id = "ask"\nflow = "ask-team"\n'
        'input = "{{ input }}"\n'
    )
    outer = doc.flows[1]
    run, effects = advance(Run("p", "outer", 1, {"question": "q"}), outer, doc.specs)
    assert effects == [StartChildRun("ask", "ask-team", {"question": "q"}, "p.ask")]
    child = Run("p.ask", "ask-team", 1, {"question": "q"}, state=RunState.SUCCEEDED)
    run = record_child(run, "ask", child)
    run, _ = advance(run, outer, doc.specs)
    assert run.state is RunState.SUCCEEDED
    assert json.loads(run.steps["ask"].results["p.ask"].output) == {}


def test_a_run_record_round_trips_through_its_bytes() -> None:
    import pytest

    from mobkit.core.errors import StoreCorruption
    from mobkit.flows.records import Parent, RunRecord
    from mobkit.flows.run_codec import decode_record, encode_record

    run, _ = start(input={"question": "q", "big": 2**70})
    run, _ = record_turn(run, FLOW, "frame", "coordinator", TurnDone("Q", {"n": 1.5}))
    run, _ = advance(run, FLOW, SPECS)
    error = TurnError(NotActive("worker-1", "dormant"))
    run, _ = record_turn(run, FLOW, "answer", "worker-1", error)
    for state in (run, cancel(run)):
        record = RunRecord(state, (FLOW,), 1, 2, "req-1", {"a": "b"}, Parent("p", "s"))
        assert decode_record(encode_record(record), "run r1") == record
    with pytest.raises(StoreCorruption, match="run r1: not a flow run"):
        decode_record(b'{"format": 9}', "run r1")
