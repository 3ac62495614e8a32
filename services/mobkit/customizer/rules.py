"""The built-in customizer: declarative rules from the ``[customizer]`` section.

::

    [customizer]
    inherit_spec = true            # default: the spec's instructions, labels, context flow in
                                   # (an object context's keys are set on the app context;
                                   # any other JSON value replaces it)

    [[customizer.rules]]
    name = "workers"               # shown in logs and refusals
    match = { profile = "worker", labels = { team = "alpha" } }   # all must hold; none = every spec
    model = "small"                # set
    system_prompt = "You are a worker."
    additional_instructions = ["Report to the coordinator."]      # appended
    labels = { tier = "worker" }   # merged
    app_context = { budget = 10 }  # keys set (on an object; any other app context is replaced)
    external_tools = [{ name = "search", description = "Search notes", input_schema = { type = "object" } }]

    [[customizer.rules]]
    name = "no-interns"
    match = { labels = { role = "intern" } }
    refuse = "interns are not deployed"   # CUSTOMIZER_FAILED with this reason

``match`` keys: ``profile`` and ``identity`` (a string or a list: any of them),
``labels`` (every pair must be on the spec). Rules apply in order, after the
spec's own fields. Appending skips an instruction already in the draft and a
tool replaces one of the same name, so customizing a customized draft changes
nothing more.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mobkit.core.errors import CustomizerFailed, InvalidArgument
from mobkit.core.types import (
    AgentBuildContext,
    AgentBuildDraft,
    DurableAgentSpec,
    ExternalToolDef,
    JsonValue,
)
from mobkit.customizer.domain import copy_draft

log = logging.getLogger("mobkit.customizer")

SECTION_KEYS = frozenset({"inherit_spec", "rules"})
RULE_KEYS = frozenset(
    {
        "name",
        "match",
        "model",
        "system_prompt",
        "additional_instructions",
        "labels",
        "app_context",
        "external_tools",
        "refuse",
    }
)
MATCH_KEYS = frozenset({"profile", "identity", "labels"})
TOOL_KEYS = frozenset({"name", "description", "input_schema"})


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """Empty fields match anything."""

    profiles: tuple[str, ...] = ()
    identities: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    def matches(self, spec: DurableAgentSpec) -> bool:
        return (
            (not self.profiles or spec.profile in self.profiles)
            and (not self.identities or spec.identity in self.identities)
            and all(spec.labels.get(k) == v for k, v in self.labels.items())
        )


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    match: RuleMatch = RuleMatch()
    model: str | None = None
    system_prompt: str | None = None
    additional_instructions: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    app_context: Mapping[str, JsonValue] = field(default_factory=dict)
    external_tools: tuple[ExternalToolDef, ...] = ()
    refuse: str | None = None

    def apply(self, spec: DurableAgentSpec, draft: AgentBuildDraft) -> None:
        """Change ``draft`` in place (a copy owned by the customizer)."""
        if self.refuse is not None:
            raise CustomizerFailed(f"{self.refuse} (rule {self.name!r})", identity=spec.identity)
        if self.model is not None:
            draft.model = self.model
        if self.system_prompt is not None:
            draft.system_prompt = self.system_prompt
        append_instructions(draft, self.additional_instructions)
        draft.labels.update(self.labels)
        if self.app_context:
            draft.app_context = merge_context(draft.app_context, self.app_context)
        for tool in self.external_tools:
            add_tool(draft, tool)


def append_instructions(draft: AgentBuildDraft, instructions: tuple[str, ...]) -> None:
    for text in instructions:
        if text not in draft.additional_instructions:
            draft.additional_instructions.append(text)


def merge_context(current: JsonValue | None, keys: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    """``keys`` set on the object ``current``; a context that is not an object (a
    string, an array, ...) has no keys to keep, so the result is ``keys`` alone."""
    base = dict(current) if isinstance(current, dict) else {}
    base.update(keys)
    return base


def inherit_context(current: JsonValue | None, context: JsonValue | None) -> JsonValue | None:
    """The spec's context flowing into the draft's: an object's keys are merged in;
    any other value (a string, an array, a number) is the app context itself."""
    if context is None:
        return current
    context = copy.deepcopy(context)  # the draft owns its context
    return merge_context(current, context) if isinstance(context, dict) else context


def add_tool(draft: AgentBuildDraft, tool: ExternalToolDef) -> None:
    """Tool names are unique within a draft: a tool replaces its namesake."""
    for i, existing in enumerate(draft.external_tools):
        if existing.name == tool.name:
            draft.external_tools[i] = tool
            return
    draft.external_tools.append(tool)


class DeclarativeCustomizer:
    """An :class:`~mobkit.customizer.domain.AgentCustomizer` applying :class:`Rule`s."""

    def __init__(self, rules: tuple[Rule, ...] = (), *, inherit_spec: bool = True) -> None:
        self.rules = rules
        self.inherit_spec = inherit_spec

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> DeclarativeCustomizer:
        section = section or {}
        _known(section, SECTION_KEYS, "customizer")
        inherit = section.get("inherit_spec", True)
        if not isinstance(inherit, bool):
            raise InvalidArgument("customizer.inherit_spec", "must be true or false")
        raw_rules = section.get("rules", [])
        if not isinstance(raw_rules, list):
            raise InvalidArgument("customizer.rules", "must be an array of tables")
        rules = tuple(_rule(raw, f"customizer.rules[{i}]") for i, raw in enumerate(raw_rules))
        return cls(rules, inherit_spec=inherit)

    async def customize_build(
        self, context: AgentBuildContext, spec: DurableAgentSpec, draft: AgentBuildDraft
    ) -> AgentBuildDraft:
        if context.identity != spec.identity:
            raise InvalidArgument(
                "spec.identity", f"{spec.identity!r} is not the identity being built"
            )
        out = copy_draft(draft)
        if self.inherit_spec:
            append_instructions(out, spec.additional_instructions)
            out.labels.update(spec.labels)
            out.app_context = inherit_context(out.app_context, spec.context)
        for rule in self.rules:
            if rule.match.matches(spec):
                rule.apply(spec, out)
        return out

    async def after_create(self, identity: str, session_id: str, context: JsonValue | None) -> None:
        log.debug("session %s created for %s", session_id, identity, extra={"identity": identity})


# -- configuration -----------------------------------------------------------------------


def _known(raw: Mapping[str, Any], keys: frozenset[str], where: str) -> None:
    for key in raw:
        if key not in keys:
            expected = ", ".join(sorted(keys))
            raise InvalidArgument(f"{where}.{key}", f"unknown setting (expected {expected})")


def _text(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(f"{where}.{key}", "must be a string")
    return value


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(where, "must be a string or a list of strings")
    return tuple(value)


def _string_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(where, "must be a table of strings")
    return dict(value)


def _rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise InvalidArgument(where, "must be a table")
    _known(raw, RULE_KEYS, where)
    name = _text(raw, "name", where) or where
    match_raw = raw.get("match", {})
    if not isinstance(match_raw, Mapping):
        raise InvalidArgument(f"{where}.match", "must be a table")
    _known(match_raw, MATCH_KEYS, f"{where}.match")
    match = RuleMatch(
        profiles=_string_list(match_raw.get("profile", []), f"{where}.match.profile"),
        identities=_string_list(match_raw.get("identity", []), f"{where}.match.identity"),
        labels=_string_map(match_raw.get("labels", {}), f"{where}.match.labels"),
    )
    app_context = raw.get("app_context", {})
    if not isinstance(app_context, Mapping):
        raise InvalidArgument(f"{where}.app_context", "must be a table")
    tools_raw = raw.get("external_tools", [])
    if not isinstance(tools_raw, list):
        raise InvalidArgument(f"{where}.external_tools", "must be an array of tables")
    refuse = _text(raw, "refuse", where)
    if refuse is not None and not refuse:
        raise InvalidArgument(f"{where}.refuse", "must give the reason")
    return Rule(
        name=name,
        match=match,
        model=_text(raw, "model", where),
        system_prompt=_text(raw, "system_prompt", where),
        additional_instructions=_string_list(
            raw.get("additional_instructions", []), f"{where}.additional_instructions"
        ),
        labels=_string_map(raw.get("labels", {}), f"{where}.labels"),
        app_context=dict(app_context),
        external_tools=tuple(
            _tool(t, f"{where}.external_tools[{i}]") for i, t in enumerate(tools_raw)
        ),
        refuse=refuse,
    )


def _tool(raw: Any, where: str) -> ExternalToolDef:
    if not isinstance(raw, Mapping):
        raise InvalidArgument(where, "must be a table")
    _known(raw, TOOL_KEYS, where)
    name = _text(raw, "name", where)
    if not name:
        raise InvalidArgument(f"{where}.name", "is required")
    schema = raw.get("input_schema", {"type": "object"})
    if not isinstance(schema, Mapping):
        raise InvalidArgument(f"{where}.input_schema", "must be a table (a JSON Schema)")
    return ExternalToolDef(
        name=name, description=_text(raw, "description", where) or "", input_schema=dict(schema)
    )
