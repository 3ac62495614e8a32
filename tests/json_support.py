"""Arbitrary JSON values (hypothesis) and a comparison that tells ``3`` from ``3.0``.

Python's ``==`` finds ``3 == 3.0 == True`` and ``2**53 + 1 == float(2**53 + 1)``
false only sometimes, so a round trip through doubles can pass an ``==`` test:
:func:`same` compares types too.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from mobkit.core.jsontext import MAX_DEPTH

EDGE_INTEGERS = [
    0,
    -1,
    2**31,
    2**53,
    2**53 + 1,
    -(2**53 + 1),
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    2**64 - 1,
    2**64 + 1,
    10**40,
    -(10**40),
]
"""Integers a double cannot hold exactly (and their neighbours)."""

# Any Unicode scalar value, lone surrogates too: JSON text escapes them.
texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
keys = st.text(max_size=8)
integers = st.sampled_from(EDGE_INTEGERS) | st.integers() | st.integers(-(2**200), 2**200)
scalars = (
    st.none() | st.booleans() | integers | st.floats(allow_nan=False, allow_infinity=False) | texts
)


def nest(leaf: Any, depth: int, as_object: bool) -> Any:
    """``leaf`` inside ``depth`` levels of objects or arrays."""
    for _ in range(depth):
        leaf = {"k": leaf} if as_object else [leaf]
    return leaf


def values_within(depth: int) -> st.SearchStrategy[Any]:
    """Any JSON value nested at most ``depth`` levels: scalars (strings and numbers as
    top-level values too), arrays, objects, big integers, floats, unicode, null, and
    values as deep as ``depth`` allows."""
    wide = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=12,  # at most 12 levels deep, far below the bound
    )
    return wide | st.builds(nest, scalars, st.integers(0, depth), st.booleans())


json_values = values_within(MAX_DEPTH)
"""Any JSON value the API carries, up to the depth bound :data:`MAX_DEPTH`."""

json_objects = st.dictionaries(keys, values_within(MAX_DEPTH - 1), max_size=4)


def same(a: Any, b: Any) -> bool:
    """Equal as JSON and of the same JSON types: ``1``, ``1.0`` and ``true`` differ."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return (
            isinstance(b, list | tuple)
            and len(a) == len(b)
            and all(same(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, float):
        return type(b) is float and a == b and math.copysign(1, a) == math.copysign(1, b)
    return type(a) is type(b) and a == b
