"""Roster documents: the example, every validation error (entry + field), the schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from json_support import same

from mobkit.core.errors import RosterInvalid
from mobkit.core.types import AgentAddressability, RuntimeMode
from mobkit.roster.document import (
    ADDRESSABILITY,
    ENTRY_KEYS,
    RUNTIME_MODES,
    TOP_LEVEL_KEYS,
    RosterRules,
    parse_roster_text,
    parse_roster_toml,
)
from mobkit.roster.domain import RosterUnreadable

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "roster.toml"
SCHEMA = ROOT / "schemas" / "roster.schema.json"

HEAD = '[profiles]\ncoordinator = "notebook"\nworker = "echo"\n'


def invalid(text: str, **kwargs: Any) -> RosterInvalid:
    with pytest.raises(RosterInvalid) as info:
        parse_roster_toml(text, **kwargs)
    return info.value


def test_example_roster_is_a_small_team() -> None:
    doc = parse_roster_toml(EXAMPLE.read_text())
    assert doc.profiles == {"coordinator": "notebook", "worker": "notebook"}
    assert [s.identity for s in doc.specs] == ["coordinator", "worker-1", "worker-2", "worker-3"]
    assert [s.profile for s in doc.specs] == ["coordinator"] + ["worker"] * 3
    internal = [
        s.identity for s in doc.specs if s.addressability is AgentAddressability.INTERNAL_ONLY
    ]
    assert internal == ["worker-3"]
    assert all(s.labels.get("team") == "alpha" for s in doc.specs)


def test_every_field_is_read() -> None:
    doc = parse_roster_toml(
        HEAD
        + """
[[agents]]
identity = "w1"
profile = "worker"
addressability = "internal_only"
display_name = "Worker One"
labels = { team = "a", tier = "x" }
additional_instructions = ["one", "two"]
initial_message = "hello"
runtime_mode_override = "turn_driven"
[agents.context]
nested = { list = [1, "two", true] }
"""
    )
    (spec,) = doc.specs
    assert spec.addressability is AgentAddressability.INTERNAL_ONLY
    assert spec.display_name == "Worker One"
    assert spec.labels == {"team": "a", "tier": "x"}
    assert spec.additional_instructions == ("one", "two")
    assert spec.initial_message == "hello"
    assert spec.runtime_mode_override is RuntimeMode.TURN_DRIVEN
    assert spec.context == {"nested": {"list": [1, "two", True]}}


@pytest.mark.parametrize(
    ("toml", "context"),
    [
        ('"eu"', "eu"),
        ("[1, 2.0, 9223372036854775807]", [1, 2.0, 2**63 - 1]),
        ("{ budget = 3, ratio = 0.5 }", {"budget": 3, "ratio": 0.5}),
        ("-7", -7),
    ],
)
def test_context_is_any_json_value_and_exact_in_toml(toml: str, context: Any) -> None:
    (spec,) = parse_roster_toml(
        HEAD + f'[[agents]]\nidentity = "w"\nprofile = "worker"\ncontext = {toml}\n'
    ).specs
    assert same(spec.context, context)


def test_context_is_exact_in_json_documents_too() -> None:
    context = {"big": 2**64 + 1, "neg": -(2**70), "n": 3, "f": 3.0, "s": "\u00e9", "z": None}
    for value in (context, [context, "x"], "text", 2**100):
        doc = {"profiles": {"worker": "echo"}, "agents": [{"identity": "w", "profile": "worker"}]}
        doc["agents"][0]["context"] = value
        (spec,) = parse_roster_text(json.dumps(doc)).specs
        assert same(spec.context, value)


def test_a_json_document_that_is_not_json_is_roster_invalid() -> None:
    for text in ('{"agents": [NaN]}', '{"agents": [' + "[" * 5000 + "]" * 5000 + "]}"):
        with pytest.raises(RosterInvalid, match="malformed JSON"):
            parse_roster_text(text)


def test_empty_roster_is_valid() -> None:
    assert parse_roster_toml("").specs == ()


def test_duplicate_identity_names_both_entries() -> None:
    err = invalid(HEAD + '[[agents]]\nidentity = "w"\nprofile = "worker"\n' * 2)
    assert (err.entry, err.field) == ("agents[1]", "identity")
    assert "agents[0]" in err.detail
    assert err.reason == "ROSTER_INVALID"
    assert err.metadata["entry"] == "agents[1]" and err.metadata["field"] == "identity"


@pytest.mark.parametrize(
    ("identity", "why"),
    [('""', "empty"), ('"two words"', "whitespace"), ('"a/b"', "slashes")],
)
def test_invalid_identity(identity: str, why: str) -> None:
    err = invalid(
        HEAD + f'[[agents]]\nidentity = "ok"\nprofile = "worker"\n'
        f'[[agents]]\nidentity = {identity}\nprofile = "worker"\n'
    )
    assert (err.entry, err.field) == ("agents[1]", "identity")
    assert why in err.detail


def test_unknown_profile_lists_the_known_ones() -> None:
    err = invalid(HEAD + '[[agents]]\nidentity = "w"\nprofile = "planner"\n')
    assert (err.entry, err.field) == ("agents[0]", "profile")
    assert "'planner'" in err.detail and "coordinator, worker" in err.detail


def test_configured_profiles_count_and_the_roster_overrides_them() -> None:
    text = '[[agents]]\nidentity = "w"\nprofile = "planner"\n'
    assert invalid(text).field == "profile"  # no profile declared anywhere
    doc = parse_roster_toml(text, rules=RosterRules(profiles={"planner": "echo"}))
    assert doc.profiles == {"planner": "echo"}
    doc = parse_roster_toml(
        '[profiles]\nplanner = "notebook"\n' + text, rules=RosterRules(profiles={"planner": "echo"})
    )
    assert doc.profiles == {"planner": "notebook"}


def test_profiles_must_name_an_agent_kind_the_runtime_offers() -> None:
    kinds = RosterRules(agent_kinds=frozenset({"notebook", "echo"}))
    text = HEAD + 'helper = "notebok"\n[[agents]]\nidentity = "w"\nprofile = "worker"\n'
    err = invalid(text, rules=kinds)
    assert (err.entry, err.field) == (None, "profiles.helper")  # unused, still refused
    assert err.detail == "unknown agent kind 'notebok' (the runtime offers: echo, notebook)"
    assert parse_roster_toml(text).profiles["helper"] == "notebok"  # no rules: not checked
    # Configured profiles are checked too: they reach the runtime the same way.
    configured = RosterRules(profiles={"planner": "ghost"}, agent_kinds=kinds.agent_kinds)
    assert invalid(HEAD, rules=configured).field == "profiles.planner"


def test_every_problem_of_a_document_is_reported() -> None:
    text = (
        'agent = []\n[profiles]\nworker = "echo"\nbad = ""\n'
        '[[agents]]\nidentity = "w"\nprofile = "worker"\nlabels = { team = 1 }\n'
        "context = { at = 1979-05-27 }\n"
        '[[agents]]\nidentity = "w"\nprofile = "boss"\n'
        '[[agents]]\nprofile = "worker"\nruntime_mode_override = "fast"\n'
    )
    err = invalid(text)
    located = [(p.entry, p.field) for p in err.problems]
    assert located == [
        (None, "agent"),
        (None, "profiles.bad"),
        ("agents[0]", "labels.team"),
        ("agents[0]", "context.at"),
        ("agents[1]", "identity"),
        ("agents[1]", "profile"),
        ("agents[2]", "identity"),
        ("agents[2]", "runtime_mode_override"),
    ]
    assert (err.entry, err.field) == (None, "agent")  # an editor jumps to the first
    assert err.detail.startswith("8 problems: [agent]: unknown top-level key 'agent'")
    assert err.metadata["problems"] == "8" and err.metadata["field"] == "agent"
    # One problem is one plain error, as before.
    single = invalid(HEAD + '[[agents]]\nidentity = "w"\nprofile = "boss"\n')
    assert single.problems == (single,) and "problems" not in single.metadata


def test_malformed_toml_says_where() -> None:
    err = invalid(HEAD + "[[agents]\nidentity = ")
    assert err.entry is None and "malformed TOML" in err.detail and "line" in err.detail


def test_non_utf8_is_unreadable() -> None:
    with pytest.raises(RosterUnreadable):
        parse_roster_toml(b"\xff\xfe[profiles]")


@pytest.mark.parametrize(
    ("entry_text", "field"),
    [
        ('identity = "w"\nprofile = "worker"\nlabesl = { a = "b" }', "labesl"),
        ('identity = "w"', "profile"),
        ('profile = "worker"', "identity"),
        ('identity = 7\nprofile = "worker"', "identity"),
        ('identity = "w"\nprofile = "worker"\naddressability = "public"', "addressability"),
        ('identity = "w"\nprofile = "worker"\ndisplay_name = ""', "display_name"),
        ('identity = "w"\nprofile = "worker"\nlabels = { team = 1 }', "labels.team"),
        ('identity = "w"\nprofile = "worker"\nlabels = "team"', "labels"),
        ('identity = "w"\nprofile = "worker"\ncontext = [1, 1979-05-27]', "context[1]"),
        ('identity = "w"\nprofile = "worker"\ncontext = { at = 1979-05-27 }', "context.at"),
        (
            'identity = "w"\nprofile = "worker"\nadditional_instructions = "x"',
            "additional_instructions",
        ),
        (
            'identity = "w"\nprofile = "worker"\nadditional_instructions = ["a", 2]',
            "additional_instructions[1]",
        ),
        (
            'identity = "w"\nprofile = "worker"\nruntime_mode_override = "fast"',
            "runtime_mode_override",
        ),
        ('identity = "w"\nprofile = "worker"\ninitial_message = 3', "initial_message"),
    ],
)
def test_bad_entry_fields(entry_text: str, field: str) -> None:
    err = invalid(HEAD + "[[agents]]\n" + entry_text + "\n")
    assert (err.entry, err.field) == ("agents[0]", field)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("agent = []", "agent"),
        ('agents = "x"', "agents"),
        ('[profiles]\nworker = ""', "profiles.worker"),
        ('[profiles]\nworker = { kind = "echo" }', "profiles.worker"),
        ('profiles = "worker"', "profiles"),
    ],
)
def test_bad_document_structure(text: str, field: str) -> None:
    assert invalid(text).field == field


def test_json_documents_are_read_like_toml() -> None:
    doc = parse_roster_text(
        json.dumps(
            {"profiles": {"worker": "echo"}, "agents": [{"identity": "w", "profile": "worker"}]}
        )
    )
    assert [s.identity for s in doc.specs] == ["w"]
    with pytest.raises(RosterInvalid, match="malformed JSON"):
        parse_roster_text('{"agents": [')
    with pytest.raises(RosterInvalid) as info:
        parse_roster_text('{"agents": {}}')
    assert info.value.field == "agents"
    with pytest.raises(RosterInvalid):
        parse_roster_text("[1, 2]  ")  # a TOML array header, not a document


# -- the JSON Schema documents exactly what the parser accepts ---------------------------


def schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SCHEMA.read_text())
    return data


def test_schema_is_a_2020_12_schema_of_the_document() -> None:
    s = schema()
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert s["type"] == "object" and s["additionalProperties"] is False
    assert set(s["properties"]) == TOP_LEVEL_KEYS
    assert s["properties"]["agents"]["items"] == {"$ref": "#/$defs/agent"}


def test_schema_agent_matches_the_parser() -> None:
    agent = schema()["$defs"]["agent"]
    assert set(agent["properties"]) == ENTRY_KEYS
    assert agent["additionalProperties"] is False
    assert set(agent["required"]) == {"identity", "profile"}
    assert set(agent["properties"]["addressability"]["enum"]) == set(ADDRESSABILITY)
    assert set(agent["properties"]["runtime_mode_override"]["enum"]) == set(RUNTIME_MODES)


def test_example_roster_satisfies_the_schema_rules() -> None:
    import re
    import tomllib

    s = schema()
    agent = s["$defs"]["agent"]
    pattern = re.compile(s["$defs"]["identity"]["pattern"])
    data = tomllib.loads(EXAMPLE.read_text())
    assert set(data) <= set(s["properties"])
    for entry in data["agents"]:
        assert set(agent["required"]) <= set(entry) <= set(agent["properties"])
        assert pattern.match(entry["identity"])
        assert entry["profile"] in data["profiles"]
    assert EXAMPLE.read_text().startswith("#:schema ../schemas/roster.schema.json")
