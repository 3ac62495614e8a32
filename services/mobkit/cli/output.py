"""How client commands print: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from mobkit.core.errors import BackendUnavailable, MobKitError
from mobkit.core.types import IdentityStatus, MobStructuralEventEnvelope
from mobkit.roster.domain import RosterProblem
from mobkit.wire.errors import RemoteError

NONE = "-"


def jsonable(value: Any) -> Any:
    """Domain values as JSON: dataclasses as objects, enums by value, durations in
    seconds; a field-less dataclass (a variant such as ``SyncWriteThrough``) by its
    snake_case name."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        if not fields:
            return re.sub(r"(?<!^)(?=[A-Z])", "_", type(value).__name__).lower()
        return {f.name: jsonable(getattr(value, f.name)) for f in fields}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def print_json(value: Any, out: TextIO | None = None) -> None:
    print(json.dumps(jsonable(value), sort_keys=True), file=out or sys.stdout, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers], *[[NONE if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def seconds(value: timedelta | None) -> str:
    return NONE if value is None else f"{value.total_seconds():.1f}s"


def status_row(s: IdentityStatus) -> list[object]:
    return [
        s.identity,
        s.state.value,
        s.owner,
        s.lease.fencing_token if s.lease else None,
        s.checkpoint_version,
        seconds(s.lease.ttl_remaining) if s.lease else None,
    ]


STATUS_HEADERS = ("IDENTITY", "STATE", "OWNER", "TOKEN", "VERSION", "LEASE TTL")


def status_line(s: IdentityStatus) -> str:
    parts = [f"{s.identity}: {s.state.value}"]
    if s.generation is not None:
        parts.append(f"generation {s.generation}")
    if s.checkpoint_version is not None:
        parts.append(f"checkpoint {s.checkpoint_version}")
    if s.owner:
        parts.append(f"owner {s.owner}")
    return ", ".join(parts)


def condition_line(c: Any) -> str:
    """One line for a backend condition (a ``mobkit.client.types.BackendCondition``)."""
    if c.reason == "BACKEND_FULL":
        fix = " run `mobkit etcd recover`." if c.backend == "etcd" else " free disk space."
        return (
            f"warning: {c.backend} is out of space ({c.detail}): writes fail with "
            f"BACKEND_FULL until space is freed;{fix}"
        )
    if c.reason == "BACKEND_UNAVAILABLE":
        return (
            f"warning: {c.backend} {c.detail}: this is the view of the replica that "
            "answered, and calls that need it fail with BACKEND_UNAVAILABLE"
        )
    return f"warning: {c.backend}: {c.reason}: {c.detail}"


def roster_problem_lines(problem: RosterProblem) -> list[str]:
    """One warning per problem of a rejected roster version."""
    return [
        f"warning: roster rejected, the last valid roster stays in force: {line}"
        for line in problem.lines()
    ]


def failure_line(s: IdentityStatus) -> str | None:
    """Why an identity is not active, when its replica knows: broken continuity, or
    the last activation attempt's error."""
    if s.failure is not None:
        return f"{s.identity}: broken: {s.failure.kind.value}: {s.failure.detail}"
    if s.activation_failure is not None:
        f = s.activation_failure
        return f"{s.identity}: cannot be activated: {f.reason}: {f.message}"
    return None


def event_line(e: MobStructuralEventEnvelope) -> str:
    when = datetime.fromtimestamp(e.timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds")
    data = json.dumps(e.data, sort_keys=True) if e.data else ""
    return "  ".join(
        x for x in (str(e.cursor), when.replace("+00:00", "Z"), e.kind, e.agent_identity, data) if x
    )


def error_reason(exc: MobKitError) -> str:
    """The reason shown to people; UNAVAILABLE when this client could not reach the
    server (as opposed to a server reporting that *its* backend is down)."""
    if isinstance(exc, BackendUnavailable) and exc.metadata.get("backend") == "remote service":
        return "UNAVAILABLE"
    if isinstance(exc, RemoteError):
        return exc.remote_reason or exc.code
    return exc.reason


def error_message(exc: MobKitError, address: str | None) -> str:
    message = " ".join(str(exc).split())  # one line, whatever the server sent
    if error_reason(exc) == "UNAVAILABLE" and address:
        return f"no answer from {address}: {message}"
    return message
