"""google.protobuf.Struct / Value <-> plain JSON values."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2

from mobkit.core.errors import InvalidArgument


def to_value(obj: Any) -> struct_pb2.Value:
    value = struct_pb2.Value()
    try:
        json_format.ParseDict(obj, value)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise InvalidArgument("json", f"not JSON-serialisable: {exc}") from exc
    return value


def from_value(value: struct_pb2.Value) -> Any:
    return json_format.MessageToDict(value)


def to_struct(obj: dict[str, Any] | None) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    if obj:
        try:
            struct.update(obj)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument("json", f"not a JSON object: {exc}") from exc
    return struct


def from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(struct)
