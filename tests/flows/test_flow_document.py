"""``[[flows]]`` in roster documents: the DAG, targets, templates, schemas, every refusal."""

from __future__ import annotations

import pytest

from mobkit.core.errors import RosterInvalid
from mobkit.flows.definition import (
    FanOutTarget,
    IdentityTarget,
    RetryPolicy,
    SelectorTarget,
    SubflowTarget,
    find_cycle,
)
from mobkit.flows.document import flow_to_entry, parse_flows
from mobkit.roster.document import parse_roster_toml

AGENTS = """
[profiles]
coordinator = "notebook"
worker = "echo"

[[agents]]
identity = "coordinator"
profile = "coordinator"

[[agents]]
identity = "worker-1"
profile = "worker"
labels = { role = "worker" }

[[agents]]
identity = "worker-2"
profile = "worker"
labels = { role = "worker" }
"""

ASK_TEAM = """
[[flows]]
flow_id = "ask-team"
description = "Workers answer, the coordinator summarises."
labels = { team = "alpha" }
[flows.input_schema]
type = "object"
required = ["question"]

[[flows.steps]]
step_id = "frame"
identity = "coordinator"
input = "Frame the question: {{ input.question }}"

[[flows.steps]]
step_id = "answer"
depends_on = ["frame"]
fan_out = { labels = { role = "worker" }, min_targets = 2 }
input = "{{ steps.frame.output }}"
timeout_seconds = 60
retry = { max_attempts = 3, initial_backoff_seconds = 0.5, max_backoff_seconds = 4 }

[[flows.steps]]
step_id = "summarise"
depends_on = ["answer"]
selector = { labels = {} }
input = "Summarise {{ steps.answer.output }} for {{ steps.frame.output }}"
[flows.steps.output_schema]
type = "string"
"""


def problems(document: str) -> list[str]:
    with pytest.raises(RosterInvalid) as caught:
        parse_roster_toml(AGENTS + document)
    return [p.located for p in caught.value.problems]


def test_a_three_step_dag_with_a_fan_out_parses() -> None:
    doc = parse_roster_toml(AGENTS + ASK_TEAM)
    (flow,) = doc.flows
    assert flow.flow_id == "ask-team"
    assert flow.labels == {"team": "alpha"}
    assert flow.input_schema == {"type": "object", "required": ["question"]}
    frame, answer, summarise = flow.steps
    assert frame.target == IdentityTarget("coordinator")
    assert answer.target == FanOutTarget({"role": "worker"}, 2)
    assert answer.depends_on == ("frame",)
    assert answer.timeout_seconds == 60.0
    assert answer.retry == RetryPolicy(3, 0.5, 4.0)
    assert summarise.target == SelectorTarget({})
    assert summarise.output_schema == {"type": "string"}
    assert [s.step_id for s in flow.ready(set(), set())] == ["frame"]
    assert [s.step_id for s in flow.ready({"frame"}, {"frame"})] == ["answer"]


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(5, 0.5, 1.5)
    assert [policy.backoff(a) for a in (2, 3, 4, 5)] == [0.5, 1.0, 1.5, 1.5]


def test_a_cycle_of_depends_on_is_refused_naming_it() -> None:
    found = problems(
        """
[[flows]]
flow_id = "loop"
[[flows.steps]]
step_id = "a"
depends_on = ["b"]
identity = "coordinator"
[[flows.steps]]
step_id = "b"
depends_on = ["a"]
identity = "coordinator"
"""
    )
    assert found == [
        "[flows[0]] [steps]: depends_on forms a cycle (a -> b -> a): steps must form a DAG"
    ]


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (
            'step_id = "a"\nidentity = "nobody"',
            "[flows[0]] [steps[0].identity]: unknown identity 'nobody' (not in this roster's agents)",
        ),
        (
            'step_id = "a"',
            "[flows[0]] [steps[0].identity]: needs exactly one target of identity, selector, "
            "fan_out, flow (given: none)",
        ),
        (
            'step_id = "a"\nidentity = "coordinator"\nflow = "x"',
            "[flows[0]] [steps[0].identity]: needs exactly one target of identity, selector, "
            "fan_out, flow (given: identity, flow)",
        ),
        (
            'step_id = "a"\nfan_out = { labels = {}, min_targets = 0 }',
            "[flows[0]] [steps[0].fan_out.min_targets]: must be an integer from 1 to 10000",
        ),
        (
            'step_id = "a"\nidentity = "coordinator"\ndepends_on = ["a"]',
            "[flows[0]] [steps[0].depends_on]: step 'a' cannot depend on itself",
        ),
        (
            'step_id = "a"\nidentity = "coordinator"\ndepends_on = ["z"]',
            "[flows[0]] [steps[0].depends_on]: unknown step 'z'",
        ),
        (
            'step_id = "a"\nidentity = "coordinator"\ninput = "{{ input"',
            "[flows[0]] [steps[0].input]: template does not parse: unexpected end of template, "
            "expected 'end of print statement'.",
        ),
        (
            'step_id = "a"\nidentity = "coordinator"\ninput = "{{ secrets }}"',
            "[flows[0]] [steps[0].input]: unknown name(s) secrets (a template sees input and steps)",
        ),
        (
            'step_id = "a"\nidentity = "coordinator"\noutput_schema = { type = "no-such-type" }',
            "[flows[0]] [steps[0].output_schema]: not a valid JSON Schema (2020-12): "
            "'no-such-type' is not valid under any of the given schemas",
        ),
        (
            'step_id = "a"\nidentity = "coordinator"\ntimeout_seconds = 0',
            "[flows[0]] [steps[0].timeout_seconds]: must be a number above 0 and at most 86400",
        ),
        (
            'step_id = "a"\nidentity = "coordinator"\nretry = { max_attempts = 0 }',
            "[flows[0]] [steps[0].retry.max_attempts]: must be an integer from 1 to 10000",
        ),
        (
            'step_id = "a"\nidentity = "coordinator"\nretri = 3',
            "[flows[0]] [steps[0].retri]: unknown field 'retri'",
        ),
        (
            'step_id = "a b"\nidentity = "coordinator"',
            "[flows[0]] [steps[0].step_id]: invalid step_id 'a b': must not contain whitespace",
        ),
    ],
)
def test_each_step_problem_names_its_flow_and_field(step: str, expected: str) -> None:
    assert problems(f'[[flows]]\nflow_id = "f"\n[[flows.steps]]\n{step}\n') == [expected]


def test_a_template_may_name_only_steps_it_depends_on() -> None:
    found = problems(
        """
[[flows]]
flow_id = "f"
[[flows.steps]]
step_id = "a"
identity = "coordinator"
[[flows.steps]]
step_id = "b"
identity = "coordinator"
input = "{{ steps.a.output }} {{ steps['c'].output }}"
[[flows.steps]]
step_id = "c"
depends_on = ["b"]
identity = "coordinator"
input = "{{ steps.a.output }}"
"""
    )
    assert found == [
        "[flows[0]] [steps[1].input]: refers to step 'a', which step 'b' does not depend on",
        "[flows[0]] [steps[1].input]: refers to step 'c', which step 'b' does not depend on",
        "[flows[0]] [steps[2].input]: refers to step 'a', which step 'c' does not depend on",
    ]


def test_flows_are_unique_and_may_not_run_each_other_in_a_cycle() -> None:
    found = problems(
        """
[[flows]]
flow_id = "outer"
[[flows.steps]]
step_id = "inner"
flow = "inner"
[[flows]]
flow_id = "inner"
[[flows.steps]]
step_id = "back"
flow = "outer"
[[flows]]
flow_id = "outer"
[[flows.steps]]
step_id = "x"
flow = "missing"
"""
    )
    assert found == [
        "[flows[2]] [flow_id]: duplicate flow_id 'outer' (first used by flows[0])",
        "[flows[0]] [steps]: flows run each other in a cycle (outer -> inner -> outer): "
        "it could never finish",
    ]


def test_a_nested_flow_step_names_a_known_flow() -> None:
    doc = parse_roster_toml(
        AGENTS
        + ASK_TEAM
        + '[[flows]]\nflow_id = "outer"\n[[flows.steps]]\nstep_id = "ask"\nflow = "ask-team"\n'
    )
    assert doc.flows[1].steps[0].target == SubflowTarget("ask-team")


def test_agents_and_flows_problems_are_reported_together() -> None:
    with pytest.raises(RosterInvalid) as caught:
        parse_roster_toml(
            '[profiles]\nw = "echo"\n[[agents]]\nidentity = "a"\nprofile = "nope"\n'
            '[[flows]]\nflow_id = "f"\nsteps = []\n'
        )
    assert [p.located for p in caught.value.problems] == [
        "[agents[0]] [profile]: unknown profile 'nope' (known: w)",
        "[flows[0]] [steps]: must be a non-empty array of tables ([[flows.steps]])",
    ]


def test_the_document_form_parses_back_to_the_same_flows() -> None:
    doc = parse_roster_toml(AGENTS + ASK_TEAM)
    entries = [flow_to_entry(f) for f in doc.flows]
    found: list[str] = []
    again = parse_flows(entries, [s.identity for s in doc.specs], lambda d, **_: found.append(d))
    assert found == []
    assert again == doc.flows


def test_find_cycle_ignores_unknown_nodes_and_finds_self_loops() -> None:
    assert find_cycle({"a": ("b",), "b": ("zzz",)}) is None
    assert find_cycle({"a": ("a",)}) == ["a", "a"]


def test_the_schema_describes_flows_as_the_parser_reads_them() -> None:
    import json
    import tomllib
    from pathlib import Path

    from jsonschema import Draft202012Validator

    from mobkit.flows.document import FLOW_KEYS, STEP_KEYS

    schema = json.loads(
        (Path(__file__).resolve().parents[2] / "schemas/roster.schema.json").read_text()
    )
    assert set(schema["$defs"]["flow"]["properties"]) == FLOW_KEYS
    assert set(schema["$defs"]["step"]["properties"]) == STEP_KEYS
    validator = Draft202012Validator(schema)
    assert list(validator.iter_errors(tomllib.loads(AGENTS + ASK_TEAM))) == []
    two_targets = tomllib.loads(
        AGENTS
        + '[[flows]]\nflow_id = "f"\n[[flows.steps]]\nstep_id = "a"\nidentity = "x"\nflow = "y"\n'
    )
    assert list(validator.iter_errors(two_targets)) != []
