"""``callback/roster_provider``, ``callback/topology_provider`` and
``callback/agent_customizer`` through the SDK's dispatcher, against the real services
(the roster file, the ``[topology]`` and ``[customizer]`` sections of compat_support)."""

from __future__ import annotations

from typing import Any

import pytest
from compat_support import Suite

from mobkit.core.errors import CustomizerFailed, InvalidArgument

ROSTER = "callback/roster_provider/roster"
EDGES = "callback/topology_provider/compute_edges"
CUSTOMIZE = "callback/agent_customizer/customize_build"
AFTER_CREATE = "callback/agent_customizer/after_create"

COORDINATOR = {
    "identity": "coordinator",
    "profile": "coordinator",
    "addressability": "addressable",
    "display_name": "Coordinator",
    "labels": {"team": "alpha"},
    "context": {"region": "eu"},
    "additional_instructions": [],
    "runtime_mode_override": "turn_driven",
    "initial_message": "Plan the week.",
}
WORKER_1 = {
    "identity": "worker-1",
    "profile": "worker",
    "addressability": "internal_only",
    "labels": {"team": "alpha"},
    "additional_instructions": ["Report to the coordinator."],
}


def worker(identity: str, team: str) -> dict[str, Any]:
    return {
        "identity": identity,
        "profile": "worker",
        "addressability": "addressable",
        "labels": {"team": team},
        "additional_instructions": [],
    }


ALL = [COORDINATOR, WORKER_1, worker("worker-2", "beta"), worker("worker-3", "beta")]


async def test_roster_answers_the_specs_as_sdk_json(suite: Suite) -> None:
    context = {"mob_definition": {"mob": {"id": "team"}}, "previous_identities": ["worker-1"]}
    assert await suite.call(ROSTER, {"context": context}) == ALL
    assert await suite.call(ROSTER, {}) == ALL  # the gateway may send no context


async def test_topology_answers_the_policies_edges_as_sdk_json(suite: Suite) -> None:
    everyone = [s["identity"] for s in ALL]
    # hubs = ["coordinator"] links it to everyone; label_keys = ["team"] meshes each team.
    assert await suite.call(EDGES, {"target_identities": everyone, "context": {"roster": ALL}}) == [
        {"a": "coordinator", "b": "worker-1"},
        {"a": "coordinator", "b": "worker-2"},
        {"a": "coordinator", "b": "worker-3"},
        {"a": "worker-2", "b": "worker-3"},
    ]
    # Only the identities active after the cycle count.
    params = {"target_identities": ["worker-2", "worker-3"], "context": {"roster": ALL}}
    assert await suite.call(EDGES, params) == [{"a": "worker-2", "b": "worker-3"}]


async def test_topology_refuses_what_mobkit_cannot_express(suite: Suite) -> None:
    image = {"type": "image", "media_type": "image/png", "data": "AAAA"}
    spec = {**worker("worker-2", "beta"), "initial_message": [image]}
    params = {"target_identities": ["worker-2"], "context": {"roster": [spec]}}
    with pytest.raises(InvalidArgument, match=r"^invalid_argument: .*initial_message"):
        await suite.call(EDGES, params)


def build_params(spec: dict[str, Any], draft: dict[str, Any]) -> dict[str, Any]:
    peer = "worker-2" if spec["identity"] == "coordinator" else "coordinator"
    return {
        "scope_id": "scope-1",
        "context": {
            "identity": spec["identity"],
            "active_peers": [peer],
            "managed_edges": [{"a": peer, "b": spec["identity"]}],
        },
        "spec": spec,
        "draft": draft,
    }


async def test_customize_build_returns_the_customized_draft_as_sdk_json(suite: Suite) -> None:
    draft = {
        "model": "big",
        "labels": {"origin": "gateway"},
        "provider_params": {"prompt_cache_key": "k1"},
    }
    assert await suite.call(CUSTOMIZE, build_params(WORKER_1, draft)) == {
        "model": "small",
        "system_prompt": "You are a worker.",
        "additional_instructions": ["Report to the coordinator."],
        "labels": {"origin": "gateway", "team": "alpha", "tier": "worker"},
        "external_tools": [
            {"name": "search", "description": "Search notes", "input_schema": {"type": "object"}}
        ],
        "provider_params": {"prompt_cache_key": "k1"},  # not MobKit's: kept as it was
    }
    # No rule matches the coordinator: only its spec flows in (context -> app_context).
    assert await suite.call(CUSTOMIZE, build_params(COORDINATOR, {})) == {
        "additional_instructions": [],
        "labels": {"team": "alpha"},
        "app_context": {"region": "eu"},
        "external_tools": [],
    }


async def test_a_refused_build_raises_with_the_reason(suite: Suite) -> None:
    intern = {**worker("worker-9", "alpha"), "labels": {"role": "intern"}}
    with pytest.raises(CustomizerFailed, match=r"^customizer_failed: .*interns are not deployed"):
        await suite.call(CUSTOMIZE, build_params(intern, {}))


async def test_after_create_reaches_the_customizer(suite: Suite) -> None:
    params = {
        "identity": "worker-1",
        "session_id": "sess-1",
        "context": {"model": "small", "labels": {"tier": "worker"}, "system_prompt": None},
    }
    assert await suite.call(AFTER_CREATE, params) is None
    with pytest.raises(Exception, match="invalid_identity"):
        await suite.call(AFTER_CREATE, {**params, "identity": "bad id"})
