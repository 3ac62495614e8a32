"""What ``--help`` says of every option, ``--version``, refused settings, and a DEBUG log
that shows MobKit rather than grpc's machinery."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import cli_commands, mobkit, option_actions

from mobkit.cli import exit_codes
from mobkit.server import options
from mobkit.server.healthcheck import check
from mobkit.server.logs import configure_logging

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0


def test_every_option_of_every_command_says_what_and_its_default() -> None:
    for path, parser in cli_commands().items():
        for action in option_actions(parser):
            where = f"mobkit {path} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and len(action.help) > 15, where
            if isinstance(action, argparse._VersionAction) or not action.option_strings:
                continue
            assert "[default: " in action.help or "(required)" in action.help, where
            if action.dest in options.OPTIONS:  # a setting: also its variable
                assert options.env_name(action.dest) in action.help, where


def test_serve_help_shows_description_default_unit_and_choices() -> None:
    run = mobkit("serve", "--help")
    assert run.returncode == 0
    text = " ".join(run.stdout.split())  # argparse wraps lines
    assert "--reconcile-interval SECONDS interval of full reconcile cycles" in text
    assert "[default: 30 s; env MOBKIT_RECONCILE_INTERVAL]" in text
    assert "one of json, text [default: json; env MOBKIT_LOG_FORMAT]" in text
    assert "[default: 67108864 bytes (64 MiB); env MOBKIT_SNAPSHOT_LIMIT_BYTES]" in text
    assert "(env MOBKIT_" not in text  # the old help said nothing else


def test_version_comes_from_the_package_metadata() -> None:
    run = mobkit("--version")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert (run.returncode, run.stdout.strip()) == (0, f"mobkit {version}")


@pytest.mark.parametrize(
    ("args", "env", "setting", "value"),
    [
        (["--log-format", "jsn"], {}, "log_format", "jsn"),
        ([], {"MOBKIT_LOG_FORMAT": "jsn"}, "log_format", "jsn"),
        (["--log-level", "LOUD"], {}, "log_level", "LOUD"),
        (["--continuity-backend", "postgres"], {}, "continuity_backend", "postgres"),
    ],
)
def test_a_value_outside_the_choices_is_refused_in_one_line(
    args: list[str], env: dict[str, str], setting: str, value: str
) -> None:
    run = mobkit("serve", "topology", "--listen", "127.0.0.1:0", *args, env=env, timeout=30)
    assert run.returncode == exit_codes.USAGE
    (line,) = run.stderr.splitlines()
    assert line.startswith("mobkit serve: ") and setting in line and repr(value) in line, line
    choices = ", ".join(options.OPTIONS[setting].choices)
    assert choices in line


def test_an_unknown_config_section_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "mobkit.toml"
    config.write_text('[topolgy]\nhubs = ["coordinator"]\n')
    run = mobkit(
        "serve", "topology", "--listen", "127.0.0.1:0", "--config", str(config), timeout=30
    )
    assert run.returncode == exit_codes.USAGE
    (line,) = run.stderr.splitlines()
    assert "unknown section [topolgy]" in line and str(config) in line, line


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root, grpc_logger = logging.getLogger(), logging.getLogger("grpc")
    saved = (root.handlers[:], root.level, grpc_logger.level)
    yield
    root.handlers[:], level, grpc_level = saved
    root.setLevel(level)
    grpc_logger.setLevel(grpc_level)


def test_debug_enables_mobkit_but_not_grpc_machinery(restored_logging: None) -> None:
    configure_logging("debug", "json")
    assert logging.getLogger("mobkit.orchestrator").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("grpc._cython.cygrpc").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("grpc._cython.cygrpc").isEnabledFor(logging.INFO)
    configure_logging("WARNING", "json")
    assert not logging.getLogger("grpc").isEnabledFor(logging.INFO)


def test_a_debug_server_logs_no_grpc_records() -> None:
    """A real server at DEBUG, asked for its health a few times: grpc narrates each
    call's event loop at DEBUG ("Loaded running loop"), none of which may show."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOBKIT_")}
    cmd = [sys.executable, "-m", "mobkit.cli", "serve", "topology", "--listen", "127.0.0.1:0"]
    proc = subprocess.Popen(
        [*cmd, "--log-level", "DEBUG", "--log-format", "json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    listening = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("listening on "):
                listening.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        assert listening.wait(START_TIMEOUT), "".join(lines)
        address = next(ln for ln in lines if ln.startswith("listening on ")).split()[-1]
        for _ in range(3):
            assert check(address) == "SERVING"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    reader.join(10)
    records = [json.loads(ln) for ln in lines if ln.startswith("{")]
    assert all(r["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") for r in records)
    assert [r for r in records if r["logger"].startswith("grpc")] == []
    assert "Loaded running loop" not in "".join(lines)
