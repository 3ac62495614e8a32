"""A fleet of real orchestrator replicas (`mobkit serve all`) on one real etcd."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mobkit.testing.fleet import Fleet
from mobkit.testing.suite import write_roster


@pytest.fixture
def make_fleet(tmp_path: Path, etcd_session: Any) -> Iterator[Any]:
    fleets: list[Fleet] = []

    def make(identities: list[str], ttl: float = 2.0, endpoints: str | None = None) -> Fleet:
        roster = write_roster(tmp_path / "roster.toml", identities)
        fleet = Fleet(tmp_path, endpoints or etcd_session.endpoint, roster, ttl)
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.close()
