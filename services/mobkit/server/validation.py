"""Input bounds every request meets before any handler runs.

- Every field that names identities (``identity``, ``identities``,
  ``target_identities``, ...) anywhere in a request is checked with the identity rule
  (:func:`mobkit.core.identity.identity_problem`), so all RPCs — including ones whose
  issue has not landed — answer INVALID_IDENTITY the same way.
- Every ``uint64``/``int64`` must fit etcd's and SQLite's signed 64 bits, and every
  ``Duration``/``Timestamp`` must be within protobuf's own range, else
  INVALID_ARGUMENT naming the field (``grants[0].fencing_token``). Whether a value
  in range makes sense (a positive token, a TTL within bounds) is the domain's call.

The walk plan is computed once per message type; a request without such fields costs
one tuple lookup.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from functools import cache

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from mobkit.core.bounds import INT64_MAX
from mobkit.core.errors import InvalidArgument, InvalidIdentity
from mobkit.core.identity import identity_problem

IDENTITY_FIELDS = frozenset(
    {
        "identity",
        "identities",
        "target_identities",
        "previous_identities",
        "active_peers",
        "to_identity",
    }
)

_STRING = FieldDescriptor.TYPE_STRING
_MESSAGE = FieldDescriptor.TYPE_MESSAGE
_WIDE_INTS = frozenset({FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64})

# google.protobuf.Duration and Timestamp ranges, as their .proto files define them.
_MAX_DURATION_SECONDS = 315_576_000_000  # 10,000 years
_MIN_TIMESTAMP_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
_MAX_TIMESTAMP_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
_MAX_NANOS = 999_999_999


class _Kind(Enum):
    IDENTITY = "identity"
    WIDE_INT = "wide_int"
    DURATION = "duration"
    TIMESTAMP = "timestamp"
    MESSAGE = "message"


_WELL_KNOWN = {
    "google.protobuf.Duration": _Kind.DURATION,
    "google.protobuf.Timestamp": _Kind.TIMESTAMP,
}

_JSON = frozenset({"google.protobuf.Value", "google.protobuf.Struct", "google.protobuf.ListValue"})
"""Free-form JSON: no identities or wide integers inside, and recursive (a Value holds a
ListValue of Values), so never walked."""

_Step = tuple[str, _Kind, bool]


@cache
def _plan(desc: Descriptor) -> tuple[_Step, ...]:
    """(field name, kind, repeated) for the fields worth visiting."""
    steps: list[_Step] = []
    for f in desc.fields:
        repeated = f.is_repeated
        if f.type == _STRING and f.name in IDENTITY_FIELDS:
            steps.append((f.name, _Kind.IDENTITY, repeated))
        elif f.type in _WIDE_INTS:
            steps.append((f.name, _Kind.WIDE_INT, repeated))
        elif f.type == _MESSAGE and f.message_type is not None:
            kind = _WELL_KNOWN.get(f.message_type.full_name)
            if f.message_type.full_name in _JSON:
                continue
            if kind is not None:
                steps.append((f.name, kind, repeated))
            elif not f.message_type.GetOptions().map_entry and _plan(f.message_type):
                steps.append((f.name, _Kind.MESSAGE, repeated))
    return tuple(steps)


def carries_identities(desc: Descriptor) -> bool:
    """Whether messages of ``desc`` name identities anywhere (for tests over every RPC)."""
    for name, kind, _ in _plan(desc):
        child = desc.fields_by_name[name].message_type
        if kind is _Kind.IDENTITY or (
            kind is _Kind.MESSAGE and child is not None and carries_identities(child)
        ):
            return True
    return False


def validate_request(msg: Message, path: str = "") -> None:
    """Raise INVALID_IDENTITY / INVALID_ARGUMENT for the first field out of bounds."""
    for name, kind, repeated in _plan(msg.DESCRIPTOR):
        if not repeated:
            if kind is not _Kind.IDENTITY and kind is not _Kind.WIDE_INT:
                if msg.HasField(name):
                    _check(kind, getattr(msg, name), path + name)
            elif not (kind is _Kind.IDENTITY and _absent_optional(msg, name)):
                # Only an `optional` identity may be absent; a plain one must be valid.
                _check(kind, getattr(msg, name), path + name)
            continue
        values: Iterable[object] = getattr(msg, name)
        for i, value in enumerate(values):
            _check(kind, value, f"{path}{name}[{i}]")


def _check(kind: _Kind, value: object, where: str) -> None:
    if kind is _Kind.IDENTITY:
        assert isinstance(value, str)
        problem = identity_problem(value)
        if problem is not None:
            raise InvalidIdentity(value, problem)
    elif kind is _Kind.WIDE_INT:
        assert isinstance(value, int)
        if value > INT64_MAX:
            raise InvalidArgument(where, f"{value} exceeds the largest value, 2^63-1")
    elif kind is _Kind.DURATION:
        _check_duration(value, where)
    elif kind is _Kind.TIMESTAMP:
        _check_timestamp(value, where)
    else:
        assert isinstance(value, Message)
        validate_request(value, where + ".")


def _check_duration(value: object, where: str) -> None:
    seconds, nanos = value.seconds, value.nanos  # type: ignore[attr-defined]
    if abs(seconds) > _MAX_DURATION_SECONDS or abs(nanos) > _MAX_NANOS:
        raise InvalidArgument(where, "outside the range of google.protobuf.Duration")
    if (seconds < 0 < nanos) or (nanos < 0 < seconds):
        raise InvalidArgument(where, "seconds and nanos must have the same sign")


def _check_timestamp(value: object, where: str) -> None:
    seconds, nanos = value.seconds, value.nanos  # type: ignore[attr-defined]
    if not _MIN_TIMESTAMP_SECONDS <= seconds <= _MAX_TIMESTAMP_SECONDS or not (
        0 <= nanos <= _MAX_NANOS
    ):
        raise InvalidArgument(where, "outside the range of google.protobuf.Timestamp")


def _absent_optional(msg: Message, name: str) -> bool:
    field = msg.DESCRIPTOR.fields_by_name[name]
    return field.has_presence and not msg.HasField(name)
