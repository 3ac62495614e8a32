"""Step input templates: JSON for values that are not text, strict names, the sandbox."""

from __future__ import annotations

import pytest

from mobkit.flows import templates


def test_text_renders_as_is_and_other_values_as_json() -> None:
    out = templates.render(
        "{{ input.question }} | {{ input }} | {{ steps.answer.output }}",
        input={"question": "why?", "n": 10**30},
        steps={"answer": {"output": ["yes", "no"]}},
    )
    assert (
        out == 'why? | {"question": "why?", "n": 1000000000000000000000000000000} | ["yes", "no"]'
    )


def test_an_undefined_name_fails_instead_of_rendering_empty() -> None:
    with pytest.raises(templates.TemplateProblem, match="has no attribute 'missing'"):
        templates.render("{{ input.missing }}", input={}, steps={})


def test_the_sandbox_keeps_python_out_of_reach() -> None:
    with pytest.raises(templates.TemplateProblem, match="unsafe"):
        templates.render("{{ input.__class__.__mro__ }}", input={}, steps={})


def test_check_names_the_steps_a_template_reads() -> None:
    source = "{% for r in steps.fan.results %}{{ r.output }}{% endfor %}{{ steps['b'].output }}"
    assert templates.check(source) == {"fan", "b"}
    with pytest.raises(templates.TemplateProblem, match="unknown name"):
        templates.check("{{ run }}")
