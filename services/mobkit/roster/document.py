"""Roster documents: parsing and validation, shared by the file and etcd sources.

The format is TOML (files; etcd also accepts the same document as JSON) and
is documented by ``schemas/roster.schema.json``::

    [profiles]                 # profile name -> agent kind of the runtime
    coordinator = "notebook"

    [[agents]]
    identity = "coordinator"   # unique; non-empty, no whitespace, no "/"
    profile = "coordinator"    # must be declared in [profiles] (or configured)
    addressability = "addressable"        # or "internal_only"
    display_name = "Coordinator"
    labels = { team = "alpha" }
    additional_instructions = ["Plan first."]
    initial_message = "Hello"
    runtime_mode_override = "turn_driven" # or "autonomous_host"
    [agents.context]           # free-form JSON: a table here, or any value
    region = "eu"              # (context = "eu", context = [1, 2], ...)

    [[flows]]                  # durable multi-agent runs (mobkit.flows.document)

``context`` is carried exactly, integers of any size included
(:mod:`mobkit.core.jsontext`); TOML dates and times are not JSON and are refused.

Every problem is a :class:`RosterInvalid` naming the entry (``agents[2]``) and
the field (``labels.team``), so an editor can point at it, and a document is
checked to its end: one error names every problem found (``problems``). Unknown
keys are errors too: a typo must not silently drop a setting. With
:class:`RosterRules` the profiles must also name agent kinds the runtime offers
(``helper = "notebok"`` is refused), so a roster is rejected before any
identity fails to activate.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mobkit.core import jsontext
from mobkit.core.errors import RosterInvalid
from mobkit.core.identity import AgentIdentity, identity_problem
from mobkit.core.types import AgentAddressability, DurableAgentSpec, RuntimeMode
from mobkit.flows.document import parse_flows
from mobkit.roster.domain import RosterDocument, RosterUnreadable

TOP_LEVEL_KEYS = frozenset({"$schema", "profiles", "agents", "flows"})
ENTRY_KEYS = frozenset(
    {
        "identity",
        "profile",
        "addressability",
        "display_name",
        "labels",
        "context",
        "additional_instructions",
        "initial_message",
        "runtime_mode_override",
    }
)
ADDRESSABILITY = {a.value: a for a in AgentAddressability}
RUNTIME_MODES = {m.value: m for m in RuntimeMode}


@dataclass(frozen=True, slots=True)
class RosterRules:
    """What a document is checked against beyond its own content."""

    profiles: Mapping[str, str] = field(default_factory=dict)
    """Profiles configured for every roster (``[roster] profiles``); the document's win."""
    agent_kinds: frozenset[str] | None = None
    """The agent kinds the runtime offers; every profile must name one (None: unchecked)."""


NO_RULES = RosterRules()


class _Problems:
    """Every problem of a document, in source order: an operator fixes them in one go."""

    def __init__(self) -> None:
        self.found: list[RosterInvalid] = []

    def add(self, detail: str, *, entry: str | None = None, field: str | None = None) -> None:
        self.found.append(RosterInvalid(detail, entry=entry, field=field))

    def raise_any(self) -> None:
        if self.found:
            raise RosterInvalid.several(self.found)


def parse_roster_toml(source: str | bytes, *, rules: RosterRules = NO_RULES) -> RosterDocument:
    """Parse and validate a TOML roster file's content."""
    text = _decode(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RosterInvalid(f"malformed TOML: {exc}") from exc
    return parse_roster_data(data, rules=rules)


def parse_roster_text(source: str | bytes, *, rules: RosterRules = NO_RULES) -> RosterDocument:
    """A roster in TOML, or in JSON when the text starts with ``{`` (the etcd source)."""
    text = _decode(source)
    if not text.lstrip().startswith("{"):
        return parse_roster_toml(text, rules=rules)
    try:
        # A context may nest MAX_DEPTH levels below its entry: root, agents, entry.
        data = jsontext.decode(text, jsontext.MAX_DEPTH + 3)
    except jsontext.NotJson as exc:
        raise RosterInvalid(f"malformed JSON: {exc}") from exc
    return parse_roster_data(data, rules=rules)


def _decode(source: str | bytes) -> str:
    if isinstance(source, str):
        return source
    try:
        return source.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RosterUnreadable(f"not UTF-8 text: {exc}") from exc


def parse_roster_data(data: Mapping[str, Any], *, rules: RosterRules = NO_RULES) -> RosterDocument:
    """Validate a decoded roster document (a TOML or JSON object); a RosterInvalid
    names every problem found (:attr:`RosterInvalid.problems`)."""
    if not isinstance(data, Mapping):
        raise RosterInvalid("a roster document must be an object (a table)")
    problems = _Problems()
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.add(
                f"unknown top-level key {key!r} (expected profiles, agents, flows)", field=key
            )
    profiles = {**rules.profiles, **_profiles(data.get("profiles", {}), problems)}
    _check_kinds(profiles, rules.agent_kinds, problems)
    agents = data.get("agents", [])
    entries: list[tuple[str, Mapping[str, Any]]] = []
    if not isinstance(agents, list):
        problems.add("must be an array of tables ([[agents]])", field="agents")
        agents = []
    for index, raw in enumerate(agents):
        entry = f"agents[{index}]"
        if isinstance(raw, Mapping):
            entries.append((entry, raw))
        else:
            problems.add("must be a table", entry=entry)
    specs = _entries(entries, profiles, problems)
    flows = parse_flows(data.get("flows", []), [s.identity for s in specs], problems.add)
    problems.raise_any()
    return RosterDocument(specs=specs, profiles=profiles, flows=flows)


def parse_profiles(value: Any, *, entry: str | None = None) -> dict[str, str]:
    """``{profile name: agent kind}``; both non-empty strings."""
    problems = _Problems()
    out = _profiles(value, problems, entry=entry)
    problems.raise_any()
    return out


def _profiles(value: Any, problems: _Problems, *, entry: str | None = None) -> dict[str, str]:
    if not isinstance(value, Mapping):
        problems.add("must be a table of profile = agent kind", entry=entry, field="profiles")
        return {}
    out: dict[str, str] = {}
    for name, kind in value.items():
        where = f"profiles.{name}"
        if not name or not isinstance(name, str):
            problems.add("profile names must be non-empty", entry=entry, field=where)
        elif not isinstance(kind, str) or not kind:
            problems.add('must name an agent kind (e.g. "notebook")', entry=entry, field=where)
        else:
            out[name] = kind
    return out


def _check_kinds(
    profiles: Mapping[str, str], kinds: frozenset[str] | None, problems: _Problems
) -> None:
    if kinds is None:
        return
    offered = ", ".join(sorted(kinds)) or "none"
    for name, kind in profiles.items():
        if kind not in kinds:
            problems.add(
                f"unknown agent kind {kind!r} (the runtime offers: {offered})",
                field=f"profiles.{name}",
            )


def parse_entries(
    entries: list[tuple[str, Mapping[str, Any]]], profiles: Mapping[str, str]
) -> tuple[DurableAgentSpec, ...]:
    """Validate ``(entry name, raw entry)`` pairs in order; identities must be unique."""
    problems = _Problems()
    specs = _entries(entries, profiles, problems)
    problems.raise_any()
    return specs


def _entries(
    entries: list[tuple[str, Mapping[str, Any]]],
    profiles: Mapping[str, str],
    problems: _Problems,
) -> tuple[DurableAgentSpec, ...]:
    seen: dict[str, str] = {}
    specs: list[DurableAgentSpec] = []
    for entry, raw in entries:
        ident = raw.get("identity")
        if isinstance(ident, str) and identity_problem(ident) is None:
            first = seen.get(ident)
            if first is not None:
                problems.add(
                    f"duplicate identity {ident!r} (first used by {first})",
                    entry=entry,
                    field="identity",
                )
            else:
                seen[ident] = entry
        spec = _entry(raw, entry=entry, profiles=profiles, problems=problems)
        if spec is not None:
            specs.append(spec)
    return tuple(specs)


def parse_entry(
    raw: Mapping[str, Any], *, entry: str, profiles: Mapping[str, str]
) -> DurableAgentSpec:
    """One validated spec; ``entry`` names it in errors (``agents[2]``)."""
    problems = _Problems()
    spec = _entry(raw, entry=entry, profiles=profiles, problems=problems)
    problems.raise_any()
    assert spec is not None
    return spec


def _entry(
    raw: Mapping[str, Any], *, entry: str, profiles: Mapping[str, str], problems: _Problems
) -> DurableAgentSpec | None:
    """The spec, or None after adding each of the entry's problems to ``problems``."""
    before = len(problems.found)
    for key in raw:
        if key not in ENTRY_KEYS:
            problems.add(f"unknown field {key!r}", entry=entry, field=str(key))

    def fail(field: str, detail: str) -> None:
        problems.add(detail, entry=entry, field=field)

    def text(field: str, *, required: bool = False) -> str | None:
        value = raw.get(field)
        if value is None:
            if required:
                fail(field, "is required")
            return None
        if not isinstance(value, str):
            fail(field, f"must be a string, got {type(value).__name__}")
            return None
        return value

    ident = text("identity", required=True)
    if ident is not None and (problem := identity_problem(ident)) is not None:
        fail("identity", f"invalid identity {ident!r}: {problem}")

    profile = text("profile", required=True)
    if profile is not None and profile not in profiles:
        known = ", ".join(sorted(profiles)) or "none declared"
        fail("profile", f"unknown profile {profile!r} (known: {known})")

    addressability = AgentAddressability.ADDRESSABLE
    raw_addr = text("addressability")
    if raw_addr is not None:
        if raw_addr in ADDRESSABILITY:
            addressability = ADDRESSABILITY[raw_addr]
        else:
            fail("addressability", f"must be one of {', '.join(ADDRESSABILITY)}")

    display_name = text("display_name")
    if display_name is not None and not display_name:
        fail("display_name", "must not be empty")

    labels = raw.get("labels", {})
    if not isinstance(labels, Mapping):
        fail("labels", "must be a table of strings")
        labels = {}
    for key, value in labels.items():
        if not isinstance(value, str):
            fail(f"labels.{key}", "label values must be strings")

    context = raw.get("context")
    try:
        jsontext.measure(context)
    except jsontext.NotJson as exc:
        fail("context" + exc.path.removeprefix("$"), exc.detail)  # "$.a[2]" -> "context.a[2]"
    context = copy.deepcopy(context)  # the spec's own: a caller's later edits stay out

    instructions = raw.get("additional_instructions", [])
    if not isinstance(instructions, list):
        fail("additional_instructions", "must be an array of strings")
        instructions = []
    for i, item in enumerate(instructions):
        if not isinstance(item, str):
            fail(f"additional_instructions[{i}]", "must be a string")

    mode = None
    raw_mode = text("runtime_mode_override")
    if raw_mode is not None:
        if raw_mode in RUNTIME_MODES:
            mode = RUNTIME_MODES[raw_mode]
        else:
            fail("runtime_mode_override", f"must be one of {', '.join(RUNTIME_MODES)}")

    initial_message = text("initial_message")
    if len(problems.found) > before:
        return None
    assert ident is not None and profile is not None
    return DurableAgentSpec(
        identity=AgentIdentity(ident),
        profile=profile,
        addressability=addressability,
        display_name=display_name,
        labels=dict(labels),
        context=context,
        additional_instructions=tuple(instructions),
        initial_message=initial_message,
        runtime_mode_override=mode,
    )


def spec_to_entry(spec: DurableAgentSpec) -> dict[str, Any]:
    """The document form of a spec (the inverse of :func:`parse_entry`), defaults omitted."""
    out: dict[str, Any] = {"identity": spec.identity, "profile": spec.profile}
    if spec.addressability is not AgentAddressability.ADDRESSABLE:
        out["addressability"] = spec.addressability.value
    if spec.display_name is not None:
        out["display_name"] = spec.display_name
    if spec.labels:
        out["labels"] = dict(spec.labels)
    if spec.context is not None:
        out["context"] = spec.context
    if spec.additional_instructions:
        out["additional_instructions"] = list(spec.additional_instructions)
    if spec.initial_message is not None:
        out["initial_message"] = spec.initial_message
    if spec.runtime_mode_override is not None:
        out["runtime_mode_override"] = spec.runtime_mode_override.value
    return out
