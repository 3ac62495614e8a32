"""Free-form JSON values carried exactly: checked, written and read as JSON text.

A context, an app context, a structured output or an event's data is any JSON
value (the seeds' ``serde_json::Value``). MobKit carries them as JSON text, never
through ``google.protobuf.Struct``, whose numbers are doubles: with text, ``3``
stays an integer and so does an integer of any size, and a string or an array
is as good a value as an object.

The rules, the same on every path (wire, roster documents, stores):

* values are ``None``, ``bool``, ``int`` (any size), finite ``float``, ``str``,
  ``list`` (or ``tuple``) and ``dict`` with ``str`` keys;
* nesting is at most :data:`MAX_DEPTH` levels (serde_json's own limit, so a
  value MobKit accepts is one the Rust seeds can read);
* text is RFC 8259 JSON: ``NaN`` and ``Infinity`` are refused, and so is a number
  too large for a double (``1e400``); an integer has at most 4,300 digits
  (Python's ``int`` conversion limit);
* text is written compact and ASCII-only (``\\u`` escapes), so any string a
  reader parsed, lone surrogates included, is written back as it came.

A top-level ``null`` is the same as no value, as serde reads ``Option<Value>``.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 128
"""Levels of arrays and objects a value may nest (a scalar is depth 0)."""


class NotJson(ValueError):
    """A value or a text that is not JSON under these rules; ``path`` locates it."""

    def __init__(self, detail: str, path: str = "$") -> None:
        super().__init__(f"{detail} (at {path})" if path != "$" else detail)
        self.detail = detail
        self.path = path


def measure(value: Any, max_depth: int = MAX_DEPTH) -> int:
    """Check that ``value`` is JSON under the module's rules; return its depth.

    Iterative, so a hostile value cannot exhaust the stack before the bound applies.
    A document that holds values (a roster) may allow its own levels on top.
    """
    deepest = 0
    # (item, its depth, the entry of its container, its key there): a path is
    # spelled out only for an error.
    stack: list[_Entry] = [(value, 0, None, None)]
    while stack:
        entry = stack.pop()
        item, level = entry[0], entry[1]
        if item is None or isinstance(item, str | int):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise NotJson("non-finite numbers are not JSON", _path(entry))
            continue
        if isinstance(item, dict):
            children: Any = item.items()
            for key in item:
                if not isinstance(key, str):
                    raise NotJson(
                        f"object keys must be strings, not {type(key).__name__}", _path(entry)
                    )
        elif isinstance(item, list | tuple):
            children = enumerate(item)
        else:
            raise NotJson(f"{type(item).__name__} values are not JSON", _path(entry))
        level += 1
        if level > max_depth:
            raise NotJson(f"nested deeper than {max_depth} levels", _path(entry))
        deepest = max(deepest, level)
        stack.extend((child, level, entry, key) for key, child in children)
    return deepest


_Entry = tuple[Any, int, Any, "str | int | None"]


def _path(entry: _Entry) -> str:
    parts: list[str] = []
    while entry[2] is not None:
        key = entry[3]
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
        entry = entry[2]
    path = "$" + "".join(reversed(parts))
    # Keys are the caller's: bounded, so an error always fits its reply.
    return path if len(path) <= _PATH_LIMIT else "..." + path[-_PATH_LIMIT:]


_PATH_LIMIT = 120


def encode(value: Any) -> str:
    """Compact, ASCII-only JSON text of a checked value."""
    return encode_measured(value)[0]


def encode_measured(value: Any) -> tuple[str, int]:
    """:func:`encode`, and the value's depth (checked once)."""
    depth = measure(value)
    return json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":")), depth


def _constant(name: str) -> Any:
    raise NotJson(f"{name} is not JSON")


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise NotJson(f"number {text} is out of range")
    return number


def decode(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The value of a JSON text, checked like :func:`measure`."""
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_float)
    except NotJson:
        raise
    except RecursionError:
        raise NotJson(f"nested deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, int digit limit
        raise NotJson(f"not JSON: {exc}") from None
    measure(value, max_depth)
    return value
