"""Identity validation for every request, before any handler runs.

Every field that names identities (``identity``, ``identities``,
``target_identities``, ...) anywhere in a request is checked with the seeds'
rule, so all RPCs — including ones whose issue has not landed — answer
INVALID_IDENTITY the same way. The walk plan is computed once per message type.
"""

from __future__ import annotations

from functools import cache

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from mobkit.core.errors import InvalidIdentity
from mobkit.core.identity import identity_problem

IDENTITY_FIELDS = frozenset(
    {"identity", "identities", "target_identities", "previous_identities", "active_peers"}
)

_STRING = FieldDescriptor.TYPE_STRING
_MESSAGE = FieldDescriptor.TYPE_MESSAGE


@cache
def _plan(desc: Descriptor) -> tuple[tuple[str, bool, bool], ...]:
    """(field name, is_identity_string, repeated) for fields worth visiting."""
    steps: list[tuple[str, bool, bool]] = []
    for f in desc.fields:
        repeated = f.is_repeated
        if f.type == _STRING and f.name in IDENTITY_FIELDS:
            steps.append((f.name, True, repeated))
        elif (
            f.type == _MESSAGE
            and f.message_type is not None
            and not f.message_type.GetOptions().map_entry
            and _plan(f.message_type)
        ):
            steps.append((f.name, False, repeated))
    return tuple(steps)


def validate_identities(msg: Message) -> None:
    for name, is_identity, repeated in _plan(msg.DESCRIPTOR):
        if is_identity:
            values = getattr(msg, name) if repeated else (getattr(msg, name),)
            for value in values:
                # Only an `optional` identity may be absent; a plain one must be valid.
                if not repeated and _absent_optional(msg, name):
                    continue
                problem = identity_problem(value)
                if problem is not None:
                    raise InvalidIdentity(value, problem)
        elif repeated:
            for item in getattr(msg, name):
                validate_identities(item)
        elif msg.HasField(name):
            validate_identities(getattr(msg, name))


def _absent_optional(msg: Message, name: str) -> bool:
    field = msg.DESCRIPTOR.fields_by_name[name]
    return field.has_presence and not msg.HasField(name)
