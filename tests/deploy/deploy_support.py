"""What the deployment files may say, derived from the code: the catalog's services,
the ``mobkit`` CLI's options and the ``MOBKIT_*`` variables (both from ``Settings``)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from mobkit.cli import _parser
from mobkit.server.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
NOT_OPTIONS = {"sections", "config_path"}  # Settings fields that are not flags

OPTION_FLAGS = {
    "--" + f.name.replace("_", "-")
    for f in dataclasses.fields(Settings)
    if f.name not in NOT_OPTIONS
} | {"--config"}
ENV_NAMES = {
    "MOBKIT_" + f.name.upper() for f in dataclasses.fields(Settings) if f.name not in NOT_OPTIONS
} | {"MOBKIT_CONFIG"}


def flags_in(command: Sequence[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in command if a.startswith("--")]


def parse_mobkit(command: Sequence[str]) -> argparse.Namespace:
    """Parse ``command`` (the words after ``mobkit``) with the real CLI parser."""
    unknown = [f for f in flags_in(command) if f not in OPTION_FLAGS]
    assert not unknown, f"not mobkit options: {unknown}"
    try:
        return _parser().parse_args(list(command))
    except SystemExit as exc:  # argparse's way to refuse
        raise AssertionError(f"mobkit {' '.join(command)} does not parse") from exc


def settings_for(command: Sequence[str], env: Mapping[str, str]) -> Settings:
    """The settings a container gets from its command and environment (validated)."""
    unknown = sorted(k for k in env if k.startswith("MOBKIT_") and k not in ENV_NAMES)
    assert not unknown, f"not MobKit settings: {unknown}"
    return load_settings(parse_mobkit(command), env=read_mounted_config(env))


CONFIG = ROOT / "deploy" / "mobkit.toml"
"""The config file compose and k8s mount at :data:`MOUNTED_CONFIG` (customizer, orchestrator)."""
MOUNTED_CONFIG = "/etc/mobkit/mobkit.toml"


def read_mounted_config(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with a mounted config file read from the repository instead."""
    if env.get("MOBKIT_CONFIG") != MOUNTED_CONFIG:
        return dict(env)
    return {**env, "MOBKIT_CONFIG": str(CONFIG)}


def hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)
