"""The Meerkat SDK gets back exactly the JSON it sent (and the roster holds), through the
compat adapters and the real services: integers of any size stay integers, floats stay
floats, and a context may be any JSON value, not only an object."""

from __future__ import annotations

from typing import Any

import pytest
from compat_support import Suite
from hypothesis import HealthCheck, given, settings
from json_support import json_objects, json_values, same

ROSTER = "callback/roster_provider/roster"
EDGES = "callback/topology_provider/compute_edges"
CUSTOMIZE = "callback/agent_customizer/customize_build"

EXACT_ROSTER = """
[profiles]
worker = "notebook"

[[agents]]
identity = "text"
profile = "worker"
context = "a plain string"

[[agents]]
identity = "list"
profile = "worker"
context = [1, 3.0, 9223372036854775807, -9223372036854775808, "two", true]

[[agents]]
identity = "table"
profile = "worker"
[agents.context]
budget = 3
ratio = 0.1
nested = { big = 9007199254740993, list = [[], {}] }
"""
CONTEXTS: dict[str, Any] = {
    "text": "a plain string",
    "list": [1, 3.0, 2**63 - 1, -(2**63), "two", True],
    "table": {"budget": 3, "ratio": 0.1, "nested": {"big": 2**53 + 1, "list": [[], {}]}},
}

pytestmark = pytest.mark.parametrize("suite", [EXACT_ROSTER], indirect=True)

# Per example one gRPC round trip against servers the fixture keeps for the test.
EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def spec(identity: str, context: Any = None) -> dict[str, Any]:
    """A spec no ``[customizer]`` rule of compat_support matches."""
    out: dict[str, Any] = {"identity": identity, "profile": "coordinator"}
    if context is not None:
        out["context"] = context
    return out


def build(spec: dict[str, Any], draft: dict[str, Any]) -> dict[str, Any]:
    return {
        "scope_id": "scope-1",
        "context": {"identity": spec["identity"], "active_peers": [], "managed_edges": []},
        "spec": spec,
        "draft": draft,
    }


async def test_the_roster_answers_each_context_exactly(suite: Suite) -> None:
    answered = {s["identity"]: s.get("context") for s in await suite.call(ROSTER, {})}
    assert answered.keys() == CONTEXTS.keys()
    for identity, context in CONTEXTS.items():
        assert same(answered[identity], context), identity


async def test_specs_whose_context_is_not_an_object_get_their_edges(suite: Suite) -> None:
    roster = await suite.call(ROSTER, {})
    params = {"target_identities": list(CONTEXTS), "context": {"roster": roster}}
    # label_keys = ["team"] meshes nobody here (no labels); hubs name no target: no edges,
    # and above all no refusal because of one spec's context.
    assert await suite.call(EDGES, params) == []
    labelled = [{**s, "labels": {"team": "t"}} for s in roster]
    params = {"target_identities": ["list", "text"], "context": {"roster": labelled}}
    assert await suite.call(EDGES, params) == [{"a": "list", "b": "text"}]


@EXAMPLES
@given(app_context=json_values, schema=json_objects)
async def test_a_draft_comes_back_with_the_json_it_was_sent(
    suite: Suite, app_context: Any, schema: dict[str, Any]
) -> None:
    tool = {"name": "lookup", "description": "Look up", "input_schema": schema}
    draft: dict[str, Any] = {"external_tools": [tool]}
    if app_context is not None:
        draft["app_context"] = app_context
    out = await suite.call(CUSTOMIZE, build(spec("coordinator"), draft))  # no rule matches
    assert same(out.get("app_context"), app_context)
    assert same(out["external_tools"], [tool])


@EXAMPLES
@given(context=json_values)
async def test_a_spec_context_reaches_the_draft_exactly(suite: Suite, context: Any) -> None:
    out = await suite.call(CUSTOMIZE, build(spec("coordinator", context), {}))
    assert same(out.get("app_context"), context)  # inherit_spec: it flows in as it is
