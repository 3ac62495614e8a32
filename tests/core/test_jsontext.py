"""``mobkit.core.jsontext``: any JSON value written and read exactly; what is not JSON
is refused with where it is, deep values and hostile text included."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from json_support import EDGE_INTEGERS, json_values, nest, same

from mobkit.core import jsontext
from mobkit.core.jsontext import MAX_DEPTH, NotJson


@given(json_values)
def test_any_json_value_round_trips_exactly(value: Any) -> None:
    text = jsontext.encode(value)
    assert text.isascii()
    assert same(jsontext.decode(text), value)
    assert same(jsontext.decode(text.encode()), value)  # bytes too (stored values)


def test_integers_stay_integers_of_any_size() -> None:
    for n in EDGE_INTEGERS:
        back = jsontext.decode(jsontext.encode({"n": n, "f": float(n % 7)}))
        assert type(back["n"]) is int and back["n"] == n
        assert type(back["f"]) is float
    assert jsontext.decode("3") == 3 and type(jsontext.decode("3")) is int
    assert type(jsontext.decode("3.0")) is float


def test_the_depth_bound_is_exact() -> None:
    for as_object in (True, False):
        deepest = nest(1, MAX_DEPTH, as_object)
        assert jsontext.measure(deepest) == MAX_DEPTH
        assert same(jsontext.decode(jsontext.encode(deepest)), deepest)
        with pytest.raises(NotJson, match=f"deeper than {MAX_DEPTH}"):
            jsontext.measure(nest(1, MAX_DEPTH + 1, as_object))
        with pytest.raises(NotJson, match=f"deeper than {MAX_DEPTH}"):
            jsontext.decode(json.dumps(nest(1, MAX_DEPTH + 1, as_object)))
    # Far deeper than Python's recursion limit: refused, never a RecursionError.
    with pytest.raises(NotJson):
        jsontext.decode("[" * 100_000 + "]" * 100_000)
    with pytest.raises(NotJson):
        jsontext.measure(nest(1, 100_000, False))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[1,]",
        "{'a': 1}",
        "NaN",
        "[Infinity]",
        "-Infinity",
        "1e400",
        "[1] x",
        "9" * 5000,  # beyond Python's 4,300-digit conversion limit
        b"\xff\xfe\x00",
    ],
)
def test_text_that_is_not_json_is_refused(text: str | bytes) -> None:
    with pytest.raises(NotJson):
        jsontext.decode(text)


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"a": [1, {"b": float("nan")}]}, "$.a[1].b"),
        ([float("inf")], "$[0]"),
        ({"a": {1: 2}}, "$.a"),
        ({"when": b"bytes"}, "$.when"),
        ([{1, 2}], "$[0]"),
    ],
)
def test_values_that_are_not_json_are_refused_with_their_path(value: Any, path: str) -> None:
    with pytest.raises(NotJson) as info:
        jsontext.encode(value)
    assert info.value.path == path


def test_an_error_stays_short_whatever_the_keys() -> None:
    huge = "k" * 20_000
    with pytest.raises(NotJson) as info:
        jsontext.measure({huge: {huge: float("nan")}})
    assert len(str(info.value)) < 300


def test_lone_surrogates_are_carried_as_escapes() -> None:
    value = {"s": "a\ud800b", "t": "\U0001f600 é"}
    text = jsontext.encode(value)
    assert "\\ud800" in text and same(jsontext.decode(text), value)
