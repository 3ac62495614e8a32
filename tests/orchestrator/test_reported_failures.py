"""What the orchestrator keeps and reports about failures nobody asked about: identities
that cannot be activated, a roster that was never valid, its census for the metrics.
Domain tests on the in-memory providers; tests/cli covers the same on a real suite."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mobkit.continuity.memory import MemoryContinuityStore
from mobkit.core.errors import RosterInvalid
from mobkit.core.identity import AgentIdentity
from mobkit.core.types import DispatchInput, DurableAgentSpec, IdentityLifecycleState
from mobkit.customizer.rules import DeclarativeCustomizer
from mobkit.events.memory import MemoryEventLog
from mobkit.lease.memory import MemoryLeaseProvider
from mobkit.orchestrator.orchestrator import Orchestrator, Providers
from mobkit.roster.file_source import FileRoster
from mobkit.roster.memory import MemoryRoster
from mobkit.runtime.local import LocalAgentRuntime
from mobkit.topology.provider import PolicyTopology

WHY = "invalid profile: unknown profile 'ghost' (known: echo, llm, notebook)"


def spec(identity: str, profile: str = "notebook") -> DurableAgentSpec:
    return DurableAgentSpec(AgentIdentity(identity), profile)


def orchestrator(roster: Any) -> Orchestrator:
    providers = Providers(
        leases=MemoryLeaseProvider(),
        continuity=MemoryContinuityStore(),
        roster=roster,
        topology=PolicyTopology(),
        customizer=DeclarativeCustomizer(),
        runtime=LocalAgentRuntime(),
        events=MemoryEventLog("test"),
    )
    return Orchestrator(providers, instance="solo~1@local", lease_ttl=timedelta(seconds=30))


async def kinds(o: Orchestrator, kind: str) -> list[dict[str, Any]]:
    await o.events.flush()
    events, _ = await o.p.events.list(0, 1000)
    return [{"identity": e.agent_identity, **e.data} for e in events if e.kind == kind]


async def test_an_identity_that_cannot_be_activated_keeps_why_until_it_is_active() -> None:
    # A roster set by code is not checked against the runtime: the runtime refuses.
    roster = MemoryRoster([spec("n1"), spec("ghost-1", "ghost")])
    o = orchestrator(roster)
    try:
        first = await o.reconcile()
        assert first.activated == ["n1"]
        assert first.failed == [("ghost-1", "INVALID_ARGUMENT", WHY)]
        status = o.status("ghost-1")
        assert status.state is IdentityLifecycleState.DORMANT and status.failure is None
        assert status.activation_failure is not None
        assert (status.activation_failure.reason, status.activation_failure.message) == (
            "INVALID_ARGUMENT",
            WHY,
        )
        seen_at = status.activation_failure.failed_at_ms
        assert seen_at > 0
        assert o.status("n1").activation_failure is None

        again = await o.reconcile()  # tried again, failed the same way: reported once
        assert again.failed == first.failed
        assert o.status("ghost-1").activation_failure == status.activation_failure
        assert await kinds(o, "activation_failed") == [
            {"identity": "ghost-1", "reason": "INVALID_ARGUMENT", "message": WHY}
        ]

        roster.set([spec("n1"), spec("ghost-1")])  # fixed: a profile the runtime knows
        fixed = await o.reconcile()
        assert fixed.activated == ["ghost-1"] and fixed.failed == []
        assert o.status("ghost-1").activation_failure is None
        assert o.census().leases_held == 2
        assert dict(o.census().states) == {"active": 2}
    finally:
        await o.shutdown()


async def test_a_roster_never_valid_is_kept_as_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "roster.toml"
    path.write_text('[[agents]]\nidentity = "a"\nprofile = "boss"\n')
    roster = await FileRoster(path, poll_interval=60).start()
    o = orchestrator(roster)
    try:
        with pytest.raises(RosterInvalid):
            await o.reconcile()
        assert o.roster_problem is not None
        assert o.roster_problem.lines() == [
            "[agents[0]] [profile]: unknown profile 'boss' (known: none declared)"
        ]
        [event] = await kinds(o, "roster_rejected")
        assert event["problems"] == o.roster_problem.lines()

        path.write_text('[profiles]\nboss = "notebook"\n' + path.read_text())
        settled = time.time_ns() - 120 * 10**9  # older than a poll: read as settled
        os.utime(path, ns=(settled, settled))
        report = await o.reconcile()
        assert report.activated == ["a"] and report.roster_problem is None
        assert o.roster_problem is None
    finally:
        await o.shutdown()
        await roster.close()


async def test_the_census_counts_every_identity_by_state_and_the_leases_held() -> None:
    o = orchestrator(MemoryRoster([spec("a"), spec("b"), spec("c")]))
    try:
        await o.reconcile()
        await o.send("a", DispatchInput("hello"))
        await o.suspend("b")  # keeps its lease
        await o.retire("c")  # releases it
        census = o.census()
        assert dict(census.states) == {"active": 1, "suspended": 1, "dormant": 1}
        assert census.leases_held == 2
    finally:
        await o.shutdown()
