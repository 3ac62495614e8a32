"""The declarative customizer: spec inheritance, rule matching and actions, refusals."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from json_support import same

from mobkit.core.errors import CustomizerFailed, InvalidArgument
from mobkit.core.types import AgentBuildContext, AgentBuildDraft, DurableAgentSpec, ExternalToolDef
from mobkit.customizer.domain import AgentCustomizer, after_create_best_effort
from mobkit.customizer.rules import DeclarativeCustomizer

RULES: dict[str, Any] = {
    "rules": [
        {
            "name": "workers",
            "match": {"profile": "worker"},
            "model": "small",
            "additional_instructions": ["Report to the coordinator."],
            "labels": {"tier": "worker"},
            "app_context": {"budget": 10},
            "external_tools": [{"name": "search", "description": "Search notes"}],
        },
        {
            "name": "alpha-workers",
            "match": {"profile": ["worker"], "labels": {"team": "alpha"}},
            "system_prompt": "You are on team alpha.",
            "labels": {"tier": "alpha-worker"},
            "external_tools": [
                {
                    "name": "search",
                    "description": "Search alpha notes",
                    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
                }
            ],
        },
        {
            "name": "no-interns",
            "match": {"labels": {"role": "intern"}},
            "refuse": "interns are not deployed",
        },
        {"name": "one-off", "match": {"identity": "special"}, "model": "big"},
    ]
}


def spec(identity: str = "w1", profile: str = "worker", **kw: Any) -> DurableAgentSpec:
    return DurableAgentSpec(identity=identity, profile=profile, **kw)


def ctx(identity: str = "w1") -> AgentBuildContext:
    return AgentBuildContext(identity=identity)  # type: ignore[arg-type]


async def test_spec_fields_flow_into_the_draft_by_default() -> None:
    customizer = DeclarativeCustomizer()
    assert isinstance(customizer, AgentCustomizer)
    draft = AgentBuildDraft(
        additional_instructions=["base"], labels={"a": "1", "b": "1"}, app_context={"x": 1, "y": 1}
    )
    s = spec(additional_instructions=("base", "mine"), labels={"b": "2"}, context={"y": 2, "z": 3})
    out = await customizer.customize_build(ctx(), s, draft)
    assert out.additional_instructions == ["base", "mine"]
    assert out.labels == {"a": "1", "b": "2"}
    assert out.app_context == {"x": 1, "y": 2, "z": 3}
    off = DeclarativeCustomizer(inherit_spec=False)
    assert await off.customize_build(ctx(), s, draft) == draft


@pytest.mark.parametrize(
    ("draft_context", "spec_context", "expected"),
    [
        ({"x": 1}, ["a", 2**64 + 1], ["a", 2**64 + 1]),  # not an object: it is the context
        ({"x": 1}, "plain text", "plain text"),
        ("old", {"y": 2}, {"y": 2}),  # keys set on an object: a non-object has none to keep
        ({"x": 1}, None, {"x": 1}),
        (None, 0, 0),
    ],
)
async def test_a_spec_context_of_any_json_type_flows_into_the_draft(
    draft_context: Any, spec_context: Any, expected: Any
) -> None:
    draft = AgentBuildDraft(app_context=draft_context)
    out = await DeclarativeCustomizer().customize_build(ctx(), spec(context=spec_context), draft)
    assert same(out.app_context, expected)
    assert draft.app_context == draft_context  # the input draft is left as it was


async def test_matching_rules_apply_in_order() -> None:
    customizer = DeclarativeCustomizer.from_config(RULES)
    out = await customizer.customize_build(
        ctx(), spec(labels={"team": "alpha"}), AgentBuildDraft(model="profile-model")
    )
    assert out.model == "small"
    assert out.system_prompt == "You are on team alpha."
    assert out.additional_instructions == ["Report to the coordinator."]
    assert out.labels == {"team": "alpha", "tier": "alpha-worker"}
    assert out.app_context == {"budget": 10}
    assert out.external_tools == [
        ExternalToolDef(
            "search",
            "Search alpha notes",
            {"type": "object", "properties": {"q": {"type": "string"}}},
        )
    ]
    coordinator = await customizer.customize_build(
        ctx("c"), spec("c", "coordinator"), AgentBuildDraft(model="profile-model")
    )
    assert coordinator == AgentBuildDraft(model="profile-model")
    special = await customizer.customize_build(
        ctx("special"), spec("special", "x"), AgentBuildDraft()
    )
    assert special.model == "big"


async def test_customizing_twice_changes_nothing_more_and_the_input_is_untouched() -> None:
    customizer = DeclarativeCustomizer.from_config(RULES)
    s = spec(labels={"team": "alpha"}, additional_instructions=("mine",), context={"k": "v"})
    draft = AgentBuildDraft(labels={"x": "y"})
    once = await customizer.customize_build(ctx(), s, draft)
    twice = await customizer.customize_build(ctx(), s, once)
    assert twice == once
    assert draft == AgentBuildDraft(labels={"x": "y"})


async def test_refusing_rule_is_customizer_failed_with_its_reason() -> None:
    customizer = DeclarativeCustomizer.from_config(RULES)
    with pytest.raises(CustomizerFailed) as info:
        await customizer.customize_build(ctx(), spec(labels={"role": "intern"}), AgentBuildDraft())
    err = info.value
    assert err.reason == "CUSTOMIZER_FAILED"
    assert "interns are not deployed" in err.detail and "no-interns" in err.detail
    assert err.metadata["identity"] == "w1"


async def test_context_and_spec_must_be_the_same_identity() -> None:
    with pytest.raises(InvalidArgument):
        await DeclarativeCustomizer().customize_build(ctx("a"), spec("b"), AgentBuildDraft())


class _Failing:
    async def customize_build(self, *args: Any) -> AgentBuildDraft:
        raise AssertionError

    async def after_create(self, identity: str, session_id: str, context: Any) -> None:
        raise CustomizerFailed("hook exploded", identity=identity)


async def test_after_create_failures_are_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert await after_create_best_effort(DeclarativeCustomizer(), "w1", "s1", None)
    with caplog.at_level(logging.WARNING, "mobkit.customizer"):
        assert not await after_create_best_effort(_Failing(), "w1", "s1", {"k": 1})
    assert any("hook exploded" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"rule": []}, "customizer.rule"),
        ({"inherit_spec": "yes"}, "customizer.inherit_spec"),
        ({"rules": {}}, "customizer.rules"),
        ({"rules": [{"modle": "x"}]}, "customizer.rules[0].modle"),
        ({"rules": [{"match": {"profiles": "w"}}]}, "customizer.rules[0].match.profiles"),
        ({"rules": [{"match": {"labels": {"a": 1}}}]}, "customizer.rules[0].match.labels"),
        ({"rules": [{"model": 3}]}, "customizer.rules[0].model"),
        ({"rules": [{"refuse": ""}]}, "customizer.rules[0].refuse"),
        (
            {"rules": [{"external_tools": [{"description": "x"}]}]},
            "customizer.rules[0].external_tools[0].name",
        ),
        (
            {"rules": [{"external_tools": [{"name": "t", "input_schema": "x"}]}]},
            "customizer.rules[0].external_tools[0].input_schema",
        ),
        ({"rules": [{"app_context": []}]}, "customizer.rules[0].app_context"),
    ],
)
def test_bad_configuration(section: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        DeclarativeCustomizer.from_config(section)
    assert info.value.field == field
