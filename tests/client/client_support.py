"""A real suite for client tests: one ``mobkit serve all`` process on the session's etcd."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mobkit.client import ClientOptions, MobKit, MobKitError
from mobkit.core.types import IdentityLifecycleState
from mobkit.testing.processes import ServeProcess
from mobkit.testing.suite import suite_process, write_roster

TEAM = ("alice", "bob", "carol", "dave", "erin")
INTERNAL = ("erin",)


def wait_active(
    address: str,
    identities: Sequence[str],
    timeout: float = 30.0,
    options: ClientOptions | None = None,
) -> None:
    """Until exactly ``identities`` are Active (the suite has reconciled)."""
    deadline = time.monotonic() + timeout
    with MobKit(address, options=options, timeout=5) as mk:
        while True:
            try:
                active = {
                    s.identity
                    for s in mk.list_statuses()
                    if s.state is IdentityLifecycleState.ACTIVE
                }
                if active == set(identities):
                    return
            except MobKitError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{sorted(identities)} never all became active")
            time.sleep(0.1)


@contextmanager
def running_suite(
    tmp: Path,
    etcd_endpoint: str,
    identities: Sequence[str] = TEAM,
    internal: Sequence[str] = INTERNAL,
) -> Iterator[ServeProcess]:
    roster = write_roster(tmp / "roster.toml", identities, internal=internal)
    proc = suite_process(tmp, etcd_endpoint, roster, prefix=f"/client-{uuid.uuid4().hex[:8]}")
    with proc:
        assert proc.address is not None
        wait_active(proc.address, identities)
        yield proc
