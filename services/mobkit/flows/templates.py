"""Step input templates: Jinja2, sandboxed, over the run's input and earlier outputs.

A template sees ``input`` (the run's input, any JSON value) and ``steps`` (for each
step it depends on, directly or not: ``output`` — the reply text, or the list of
replies of a fan-out — ``structured_output`` and ``results``, one
``{identity, output, structured_output}`` per target). A value that is not text is
rendered as JSON, so ``{{ input }}`` of an object is its JSON and ``{{ steps.ask.output
}}`` of a fan-out is a JSON array. An undefined name fails the step instead of
rendering as an empty string. Templates run in Jinja's sandbox: a roster author can
not reach Python objects through them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined, nodes
from jinja2.sandbox import SandboxedEnvironment

NAMES = frozenset({"input", "steps"})


def _json_unless_text(value: Any) -> Any:
    if isinstance(value, (str, Undefined)):  # str() of a StrictUndefined raises
        return value
    return json.dumps(value, ensure_ascii=False)


_ENV = SandboxedEnvironment(
    undefined=StrictUndefined,
    autoescape=False,
    finalize=_json_unless_text,
    keep_trailing_newline=True,
)


class TemplateProblem(ValueError):
    """A template that does not parse or does not render; ``detail`` says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def check(source: str) -> set[str]:
    """Parse ``source``; the steps it names (``steps.ask`` or ``steps['ask']``).

    Raises :class:`TemplateProblem` for a syntax error or a name other than
    ``input`` and ``steps``.
    """
    try:
        tree = _ENV.parse(source)
    except TemplateError as exc:
        raise TemplateProblem(f"template does not parse: {exc}") from exc
    declared = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "store"}
    unknown = {
        n.name
        for n in tree.find_all(nodes.Name)
        if n.ctx == "load" and n.name not in NAMES and n.name not in declared
    }
    if unknown:
        raise TemplateProblem(
            f"unknown name(s) {', '.join(sorted(unknown))} (a template sees input and steps)"
        )
    named: set[str] = set()
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name == "steps":
            named.add(node.attr)
    for item in tree.find_all(nodes.Getitem):
        if (
            isinstance(item.node, nodes.Name)
            and item.node.name == "steps"
            and isinstance(item.arg, nodes.Const)
            and isinstance(item.arg.value, str)
        ):
            named.add(item.arg.value)
    return named


def render(source: str, *, input: Any, steps: Mapping[str, Any]) -> str:
    """The step's message; :class:`TemplateProblem` when rendering fails."""
    try:
        return _ENV.from_string(source).render(input=input, steps=dict(steps))
    except TemplateError as exc:
        raise TemplateProblem(f"template does not render: {exc}") from exc
    except (TypeError, ValueError) as exc:  # e.g. a value json cannot encode
        raise TemplateProblem(f"template does not render: {exc}") from exc
