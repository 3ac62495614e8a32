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

``context`` is carried exactly, integers of any size included
(:mod:`mobkit.core.jsontext`); TOML dates and times are not JSON and are refused.

Every problem is a :class:`RosterInvalid` naming the entry (``agents[2]``) and
the field (``labels.team``), so an editor can point at it. Unknown keys are
errors too: a typo must not silently drop a setting.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from typing import Any

from mobkit.core import jsontext
from mobkit.core.errors import RosterInvalid
from mobkit.core.identity import AgentIdentity, identity_problem
from mobkit.core.types import AgentAddressability, DurableAgentSpec, RuntimeMode
from mobkit.roster.domain import RosterDocument, RosterUnreadable

TOP_LEVEL_KEYS = frozenset({"$schema", "profiles", "agents"})
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


def parse_roster_toml(
    source: str | bytes, *, configured_profiles: Mapping[str, str] | None = None
) -> RosterDocument:
    """Parse and validate a TOML roster file's content."""
    text = _decode(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RosterInvalid(f"malformed TOML: {exc}") from exc
    return parse_roster_data(data, configured_profiles=configured_profiles)


def parse_roster_text(
    source: str | bytes, *, configured_profiles: Mapping[str, str] | None = None
) -> RosterDocument:
    """A roster in TOML, or in JSON when the text starts with ``{`` (the etcd source)."""
    text = _decode(source)
    if not text.lstrip().startswith("{"):
        return parse_roster_toml(text, configured_profiles=configured_profiles)
    try:
        # A context may nest MAX_DEPTH levels below its entry: root, agents, entry.
        data = jsontext.decode(text, jsontext.MAX_DEPTH + 3)
    except jsontext.NotJson as exc:
        raise RosterInvalid(f"malformed JSON: {exc}") from exc
    return parse_roster_data(data, configured_profiles=configured_profiles)


def _decode(source: str | bytes) -> str:
    if isinstance(source, str):
        return source
    try:
        return source.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RosterUnreadable(f"not UTF-8 text: {exc}") from exc


def parse_roster_data(
    data: Mapping[str, Any], *, configured_profiles: Mapping[str, str] | None = None
) -> RosterDocument:
    """Validate a decoded roster document (a TOML or JSON object)."""
    if not isinstance(data, Mapping):
        raise RosterInvalid("a roster document must be an object (a table)")
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise RosterInvalid(
                f"unknown top-level key {key!r} (expected profiles, agents)", field=key
            )
    profiles = {**(configured_profiles or {}), **parse_profiles(data.get("profiles", {}))}
    agents = data.get("agents", [])
    if not isinstance(agents, list):
        raise RosterInvalid("must be an array of tables ([[agents]])", field="agents")
    entries: list[tuple[str, Mapping[str, Any]]] = []
    for index, raw in enumerate(agents):
        entry = f"agents[{index}]"
        if not isinstance(raw, Mapping):
            raise RosterInvalid("must be a table", entry=entry)
        entries.append((entry, raw))
    return RosterDocument(specs=parse_entries(entries, profiles), profiles=profiles)


def parse_profiles(value: Any, *, entry: str | None = None) -> dict[str, str]:
    """``{profile name: agent kind}``; both non-empty strings."""
    if not isinstance(value, Mapping):
        raise RosterInvalid(
            "must be a table of profile = agent kind", entry=entry, field="profiles"
        )
    out: dict[str, str] = {}
    for name, kind in value.items():
        where = f"profiles.{name}"
        if not name or not isinstance(name, str):
            raise RosterInvalid("profile names must be non-empty", entry=entry, field=where)
        if not isinstance(kind, str) or not kind:
            raise RosterInvalid(
                'must name an agent kind (e.g. "notebook")', entry=entry, field=where
            )
        out[name] = kind
    return out


def parse_entries(
    entries: list[tuple[str, Mapping[str, Any]]], profiles: Mapping[str, str]
) -> tuple[DurableAgentSpec, ...]:
    """Validate ``(entry name, raw entry)`` pairs in order; identities must be unique."""
    seen: dict[str, str] = {}
    specs: list[DurableAgentSpec] = []
    for entry, raw in entries:
        spec = parse_entry(raw, entry=entry, profiles=profiles)
        first = seen.get(spec.identity)
        if first is not None:
            raise RosterInvalid(
                f"duplicate identity {spec.identity!r} (first used by {first})",
                entry=entry,
                field="identity",
            )
        seen[spec.identity] = entry
        specs.append(spec)
    return tuple(specs)


def parse_entry(
    raw: Mapping[str, Any], *, entry: str, profiles: Mapping[str, str]
) -> DurableAgentSpec:
    """One validated spec; ``entry`` names it in errors (``agents[2]``)."""
    for key in raw:
        if key not in ENTRY_KEYS:
            raise RosterInvalid(f"unknown field {key!r}", entry=entry, field=str(key))

    def fail(field: str, detail: str) -> RosterInvalid:
        return RosterInvalid(detail, entry=entry, field=field)

    def text(field: str, *, required: bool = False) -> str | None:
        value = raw.get(field)
        if value is None:
            if required:
                raise fail(field, "is required")
            return None
        if not isinstance(value, str):
            raise fail(field, f"must be a string, got {type(value).__name__}")
        return value

    ident = text("identity", required=True)
    assert ident is not None
    problem = identity_problem(ident)
    if problem is not None:
        raise fail("identity", f"invalid identity {ident!r}: {problem}")

    profile = text("profile", required=True)
    assert profile is not None
    if profile not in profiles:
        known = ", ".join(sorted(profiles)) or "none declared"
        raise fail("profile", f"unknown profile {profile!r} (known: {known})")

    addressability = AgentAddressability.ADDRESSABLE
    raw_addr = text("addressability")
    if raw_addr is not None:
        if raw_addr not in ADDRESSABILITY:
            raise fail("addressability", f"must be one of {', '.join(ADDRESSABILITY)}")
        addressability = ADDRESSABILITY[raw_addr]

    display_name = text("display_name")
    if display_name is not None and not display_name:
        raise fail("display_name", "must not be empty")

    labels = raw.get("labels", {})
    if not isinstance(labels, Mapping):
        raise fail("labels", "must be a table of strings")
    for key, value in labels.items():
        if not isinstance(value, str):
            raise fail(f"labels.{key}", "label values must be strings")

    context = raw.get("context")
    try:
        jsontext.measure(context)
    except jsontext.NotJson as exc:
        field = "context" + exc.path.removeprefix("$")  # "$.a[2]" -> "context.a[2]"
        raise fail(field, exc.detail) from None
    context = copy.deepcopy(context)  # the spec's own: a caller's later edits stay out

    instructions = raw.get("additional_instructions", [])
    if not isinstance(instructions, list):
        raise fail("additional_instructions", "must be an array of strings")
    for i, item in enumerate(instructions):
        if not isinstance(item, str):
            raise fail(f"additional_instructions[{i}]", "must be a string")

    mode = None
    raw_mode = text("runtime_mode_override")
    if raw_mode is not None:
        if raw_mode not in RUNTIME_MODES:
            raise fail("runtime_mode_override", f"must be one of {', '.join(RUNTIME_MODES)}")
        mode = RUNTIME_MODES[raw_mode]

    return DurableAgentSpec(
        identity=AgentIdentity(ident),
        profile=profile,
        addressability=addressability,
        display_name=display_name,
        labels=dict(labels),
        context=context,
        additional_instructions=tuple(instructions),
        initial_message=text("initial_message"),
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
