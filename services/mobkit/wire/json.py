"""Free-form JSON fields on the wire: ``<name>_json`` text, with the deprecated
``google.protobuf.Struct`` / ``Value`` field ``<name>`` beside it for older peers.

Writers fill the text, and the Struct too when it can hold the value (an object,
nested at most :data:`STRUCT_MAX_DEPTH` levels, numbers as doubles), so a reader
built before the text fields existed still sees what it always saw. Readers take
the text when it is set and fall back to the Struct, whose integral numbers come
back as integers (the proto3 JSON mapping prints them so). The value rules are
:mod:`mobkit.core.jsontext`'s.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message

from mobkit.core import jsontext
from mobkit.core.errors import InvalidArgument
from mobkit.core.types import JsonValue

STRUCT_MAX_DEPTH = 20
"""Deepest value copied into a Struct. protobuf parsers stop at 100 nested messages
(C++, Java, Python), and each JSON level costs up to three (Struct, map entry,
Value): deeper, an older reader could not even parse the message."""

_EXACT_DOUBLE = 2**53


def _field(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def put_json(msg: Message, name: str, value: JsonValue | None, where: str = "") -> None:
    """Set ``msg.<name>_json`` (and the Struct/Value ``msg.<name>`` where it fits);
    ``None`` leaves both unset. ``where`` prefixes the field an error names."""
    if value is None:
        return
    try:
        text, depth = jsontext.encode_measured(value)
    except jsontext.NotJson as exc:
        raise InvalidArgument(_field(where, name), str(exc)) from None
    setattr(msg, f"{name}_json", text)
    if depth > STRUCT_MAX_DEPTH:
        return
    legacy = getattr(msg, name)
    try:
        if isinstance(legacy, struct_pb2.Struct):
            if not isinstance(value, dict):
                return
            legacy.update(value)
            legacy.SetInParent()  # keeps {} distinct from "none"
        else:
            json_format.ParseDict(value, legacy)
    except (ValueError, TypeError, OverflowError, json_format.ParseError):
        # Not representable there at all (an integer beyond a double's range, a
        # lone surrogate): older readers see no value, newer ones read the text.
        msg.ClearField(name)


def get_json(msg: Message, name: str, where: str = "") -> JsonValue | None:
    """The value of ``msg.<name>_json``, else of the Struct/Value ``msg.<name>``, else
    ``None``. Text that is not JSON is INVALID_ARGUMENT naming ``<where>.<name>_json``."""
    text: str = getattr(msg, f"{name}_json")
    if text:
        try:
            return jsontext.decode(text)
        except jsontext.NotJson as exc:
            raise InvalidArgument(_field(where, f"{name}_json"), str(exc)) from None
    if not msg.HasField(name):
        return None
    return _integral(json_format.MessageToDict(getattr(msg, name)))


def _integral(value: Any) -> Any:
    """A Struct's doubles as JSON numbers: ``3.0`` is ``3`` (within 2^53, exact)."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_DOUBLE:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value
