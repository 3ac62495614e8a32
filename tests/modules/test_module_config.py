"""The [modules] section: the trusted command list and its validation."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from mobkit.core.errors import InvalidArgument
from mobkit.core.types import RestartPolicy
from mobkit.modules.config import Supervision, parse_modules


def test_full_section() -> None:
    config = parse_modules(
        {
            "namespace": "team",
            "call_timeout": 5,
            "crash_loop_limit": 2,
            "module": [
                {
                    "id": "clock",
                    "python_module": "mobkit.examples_modules.clock",
                    "args": ["--x"],
                    "env": {"A": "1"},
                },
                {
                    "id": "notes",
                    "command": "notes-mcp",
                    "restart_policy": "never",
                    "required": False,
                },
            ],
        }
    )
    clock, notes = config.modules
    assert clock.command == sys.executable
    assert clock.args == ("-m", "mobkit.examples_modules.clock", "--x")
    assert clock.restart_policy is RestartPolicy.ON_FAILURE  # the default
    assert notes.command == "notes-mcp" and notes.restart_policy is RestartPolicy.NEVER
    assert config.required == {"clock"}  # required unless it says otherwise
    assert config.env("clock") == {"A": "1"} and config.env("notes") == {}
    assert config.mobkit.discovery.namespace == "team"
    assert config.mobkit.discovery.modules == ("clock", "notes")
    assert config.supervision.call_timeout == 5 and config.supervision.crash_loop_limit == 2
    # Module logs rotate at 10 MiB, keeping 3 rotated files, unless the section says.
    assert (config.supervision.log_max_bytes, config.supervision.log_backups) == (10 << 20, 3)
    small = parse_modules({"log_max_bytes": 4096, "log_backups": 1}).supervision
    assert (small.log_max_bytes, small.log_backups) == (4096, 1)


def test_no_section_means_no_modules() -> None:
    assert parse_modules(None).modules == ()
    assert parse_modules({}).modules == ()


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"module": [{"id": "a.b", "command": "x"}]}, "modules.module[0].id"),
        ({"module": [{"id": "A", "command": "x"}]}, "modules.module[0].id"),
        ({"module": [{"id": "a"}]}, "modules.module[0]"),
        ({"module": [{"id": "a", "command": "x", "python_module": "y"}]}, "modules.module[0]"),
        (
            {"module": [{"id": "a", "command": "x", "restart_policy": "sometimes"}]},
            "modules.module[0].restart_policy",
        ),
        ({"module": [{"id": "a", "command": "x", "env": {"A": 1}}]}, "modules.module[0].env"),
        ({"module": [{"id": "a", "command": "x", "args": "-v"}]}, "modules.module[0].args"),
        (
            {"module": [{"id": "a", "command": "x", "required": "yes"}]},
            "modules.module[0].required",
        ),
        ({"module": [{"id": "a", "command": "x", "shell": True}]}, "modules.module[0].shell"),
        (
            {"module": [{"id": "a", "command": "x"}, {"id": "a", "command": "y"}]},
            "modules.module[1].id",
        ),
        ({"modules": []}, "modules.modules"),
        ({"call_timeout": 0}, "modules.call_timeout"),
        ({"crash_loop_limit": 0}, "modules.crash_loop_limit"),
        ({"log_max_bytes": 0}, "modules.log_max_bytes"),
        ({"log_backups": 1.5}, "modules.log_backups"),
        ({"backoff_initial": 5, "backoff_max": 1}, "modules.backoff_max"),
    ],
)
def test_bad_sections_name_the_field(section: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_modules(section)
    assert caught.value.field == field


def test_backoff_doubles_up_to_the_cap() -> None:
    s = Supervision(backoff_initial=0.5, backoff_max=3.0)
    assert [s.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
