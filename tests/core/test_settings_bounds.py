"""Every numeric setting is bounded (server/options.BOUNDS): out-of-range, NaN and
infinite values are refused naming the setting, from flags, environment and TOML alike."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mobkit.core.errors import InvalidArgument
from mobkit.server.config import Settings, load_settings
from mobkit.server.options import BOUNDS


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_each_bound_refuses_beyond_and_accepts_at_its_edges(name: str) -> None:
    low, high = BOUNDS[name]
    integral = isinstance(getattr(Settings(), name), int)
    for edge in (low, high):
        value = int(edge) if integral else edge
        assert getattr(load_settings(env={}, overrides={name: value}), name) == value
    beyond = [high * 2 + 1, -1, 2**63] + ([] if integral else [math.inf, math.nan])
    for value in beyond:
        if value == -1 and low < 0:
            continue
        with pytest.raises(InvalidArgument) as info:
            load_settings(env={}, overrides={name: value})
        assert info.value.field == name


def test_environment_and_config_file_values_are_checked_too(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument) as info:
        load_settings(env={"MOBKIT_RECONCILE_INTERVAL": "inf"})
    assert info.value.field == "reconcile_interval"
    config = tmp_path / "mobkit.toml"
    config.write_text("grace = 1e300\n")
    with pytest.raises(InvalidArgument) as info:
        load_settings(env={"MOBKIT_CONFIG": str(config)})
    assert info.value.field == "grace"


def test_the_configuration_reference_lists_every_bound() -> None:
    from mobkit.server.options import OPTIONS, flag

    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for name, (low, high) in BOUNDS.items():
        row = f"| `{flag(name)}` | {low:g} | {high:g} | {OPTIONS[name].unit or '-'} |"
        assert row in doc, row
