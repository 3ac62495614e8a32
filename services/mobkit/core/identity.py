"""Identity validation, mirroring the seeds' ``validate_identity_string``.

Identities are kept as plain ``str`` at run time (``NewType``) so that batches of
thousands cost nothing extra; validation happens once, at the edge.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NewType

from mobkit.core.bounds import control_problem, length_problem, name_problem
from mobkit.core.errors import InvalidArgument, InvalidIdentity

AgentIdentity = NewType("AgentIdentity", str)
"""The stable, app-facing name of a durable agent (e.g. ``planner``)."""

AgentRuntimeId = NewType("AgentRuntimeId", str)
"""Runtime-level id minted when an identity is first created."""

SessionId = NewType("SessionId", str)

FencingToken = NewType("FencingToken", int)
"""Proof of an identity's lease: the ``create_revision`` of its lease key, larger for
every new holder. A store refuses a write under a lower (or, on a shared etcd, any
other) token."""


# For str patterns ``\s`` is exactly what ``str.isspace()`` accepts, the rule of
# Meerkat's Python validator. It differs from the seeds' Rust ``char::is_whitespace``
# only in U+001C..U+001F, which are controls and refused below either way.
_WHITESPACE = re.compile(r"\s")


def identity_problem(value: str) -> str | None:
    """The reason ``value`` is not a valid identity, or None when it is: the seed's rules
    in the seed's order (empty, whitespace, slash), then MobKit's bounds (at most
    :data:`~mobkit.core.bounds.MAX_NAME_BYTES` UTF-8 bytes; no control or format
    characters). Hot path: batches of thousands."""
    if not value:
        return "must not be empty"
    if _WHITESPACE.search(value):
        return "must not contain whitespace"
    if "/" in value:
        return "must not contain slashes"
    return length_problem(value) or control_problem(value)


def parse_identity(value: str) -> AgentIdentity:
    """Validate an identity: non-empty, no whitespace, no ``/``."""
    problem = identity_problem(value)
    if problem is not None:
        raise InvalidIdentity(value, problem)
    return AgentIdentity(value)


def parse_runtime_id(value: str) -> AgentRuntimeId:
    """Runtime ids follow the identity rules (the seeds share one macro)."""
    return AgentRuntimeId(parse_identity(value))


def parse_identities(values: Iterable[str], *, field: str = "identities") -> list[AgentIdentity]:
    """Validate a batch: every identity valid and none repeated (API.md batch rule)."""
    out: list[AgentIdentity] = []
    seen: set[str] = set()
    for value in values:
        out.append(parse_identity(value))
        if value in seen:
            raise InvalidArgument(field, f"duplicate identity {value!r} in one request")
        seen.add(value)
    return out


def parse_runtime_instance(value: str, field: str = "runtime_instance") -> str:
    """A lease holder's name (``orch-1@10.0.0.5:7000``): non-empty, no surrounding
    whitespace, at most 256 UTF-8 bytes, no control or format characters (a newline
    would forge log lines and ``mobkit leases`` rows). Inner spaces and ``/`` are allowed."""
    if not value or value.strip() != value:
        raise InvalidArgument(field, "must be non-empty without surrounding whitespace")
    problem = name_problem(value)
    if problem is not None:
        raise InvalidArgument(field, problem)
    return value


def parse_name(value: str, field: str, *, required: bool = True) -> str:
    """A key a caller names (a run id, a request id): the name bounds of
    :func:`~mobkit.core.bounds.name_problem`; empty only when not ``required``."""
    if not value:
        if required:
            raise InvalidArgument(field, "is required")
        return value
    problem = name_problem(value)
    if problem is not None:
        raise InvalidArgument(field, problem)
    return value


def parse_display_name(value: str) -> str:
    """Display names are free text but never empty."""
    if not value:
        raise InvalidIdentity(value, "display name must not be empty")
    return value
