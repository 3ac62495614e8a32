"""A checkpoint whose write landed but whose reply was lost (an etcd member died
mid-call): the orchestrator resyncs from the store, so the next turn continues at the
right version and a retry with the same idempotency key gets the original receipt.
Domain test on the in-memory providers; the fleet tests cover the real etcd case."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from mobkit.continuity.memory import MemoryContinuityStore
from mobkit.core.errors import BackendUnavailable
from mobkit.core.identity import AgentIdentity
from mobkit.core.types import DispatchInput, DurableAgentSpec
from mobkit.customizer.rules import DeclarativeCustomizer
from mobkit.events.memory import MemoryEventLog
from mobkit.lease.memory import MemoryLeaseProvider
from mobkit.orchestrator.orchestrator import Orchestrator, Providers
from mobkit.roster.memory import MemoryRoster
from mobkit.runtime.local import LocalAgentRuntime
from mobkit.topology.provider import PolicyTopology


class LostReplyStore(MemoryContinuityStore):
    """Applies the next save, then reports the store unavailable (the reply was lost)."""

    lose_next = False

    async def save_session_snapshot(self, *args: Any, **kwargs: Any) -> Any:
        result = await super().save_session_snapshot(*args, **kwargs)
        if self.lose_next:
            self.lose_next = False
            raise BackendUnavailable("continuity", "reply lost")
        return result


@pytest.fixture
async def orchestrator() -> Orchestrator:
    store = LostReplyStore()
    providers = Providers(
        leases=MemoryLeaseProvider(),
        continuity=store,
        roster=MemoryRoster([DurableAgentSpec(AgentIdentity("n1"), "notebook")]),
        topology=PolicyTopology(),
        customizer=DeclarativeCustomizer(),
        runtime=LocalAgentRuntime(),
        events=MemoryEventLog("test"),
    )
    o = Orchestrator(providers, instance="solo~1@local", lease_ttl=timedelta(seconds=30))
    report = await o.reconcile()
    assert report.activated == ["n1"]
    return o


async def test_lost_reply_resyncs_then_continues(orchestrator: Orchestrator) -> None:
    o = orchestrator
    store: LostReplyStore = o.p.continuity  # type: ignore[assignment]
    first = await o.send("n1", DispatchInput("remember one"))
    assert first.checkpoint_version == 1

    store.lose_next = True
    with pytest.raises(BackendUnavailable):
        await o.send("n1", DispatchInput("remember two", idempotency_key="k2"))
    # The write did land: the retry with the same key returns its receipt, no new turn.
    retry = await o.send("n1", DispatchInput("remember two", idempotency_key="k2"))
    assert retry.checkpoint_version == 2 and "two" in retry.output

    third = await o.send("n1", DispatchInput("recall"))
    assert third.checkpoint_version == 3
    assert "turn 3" in third.output and "one" in third.output and "two" in third.output
