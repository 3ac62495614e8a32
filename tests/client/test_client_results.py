"""The client returns domain dataclasses, pages through lists, and works in both flavours."""

from __future__ import annotations

import uuid
from datetime import timedelta

from client_support import INTERNAL, TEAM

from mobkit.client import AsyncMobKit, MobKit, ReconcileResult
from mobkit.core.types import (
    DispatchOrigin,
    DispatchReceipt,
    IdentityLifecycleState,
    IdentityStatus,
    LeaseInfo,
    ManagedPeerEdge,
    MobStructuralEventEnvelope,
)
from mobkit.lease.domain import Lease
from mobkit.testing.processes import ServeProcess

ACTIVE = IdentityLifecycleState.ACTIVE


async def test_turns_return_receipts_and_a_repeated_key_the_same_one(
    suite: ServeProcess,
) -> None:
    key = f"k-{uuid.uuid4().hex}"
    async with AsyncMobKit(suite.address) as mk:
        before = await mk.status("carol")
        first = await mk.send("carol", "remember the milk", idempotency_key=key)
        again = await mk.send("carol", "remember the milk", idempotency_key=key)
        internal = await mk.dispatch(INTERNAL[0], "hello", origin=DispatchOrigin.SCHEDULER)
        after = await mk.status("carol")
    assert isinstance(first, DispatchReceipt)
    assert first == again  # one turn: the original receipt
    assert first.identity == "carol" and first.session_id == before.session_id
    assert "the milk" in first.output
    assert after.checkpoint_version == (before.checkpoint_version or 0) + 1
    assert internal.identity == INTERNAL[0]


async def test_statuses_are_paged_through_and_filtered(suite: ServeProcess) -> None:
    async with AsyncMobKit(suite.address) as mk:
        paged = [s async for s in mk.list_statuses(page_size=2)]
        first_page = await mk.list_statuses_page(page_size=2)
        active = [s async for s in mk.list_statuses(state=ACTIVE)]
        none = [s async for s in mk.list_statuses(labels={"no-such": "label"})]
        one = await mk.status("alice")
    assert [s.identity for s in paged] == sorted(TEAM)
    assert len(first_page.items) == 2 and first_page.next_page_token
    assert {s.identity for s in active} == set(TEAM)
    assert none == []
    assert isinstance(one, IdentityStatus) and one.state is ACTIVE
    assert isinstance(one.lease, LeaseInfo) and one.lease.fencing_token > 0
    assert isinstance(one.lease.ttl_remaining, timedelta)
    assert one.owner


async def test_events_topology_reconcile_and_leases(suite: ServeProcess) -> None:
    async with AsyncMobKit(suite.address) as mk:
        events = [e async for e in mk.list_events(0)]
        paged = [e async for e in mk.list_events(0, page_size=2)]
        edges = [e async for e in mk.topology()]
        alice_edges = [e async for e in mk.topology("alice")]
        report = await mk.reconcile()
        leases = [x async for x in mk.providers.lease.leases(page_size=2)]
    assert events and all(isinstance(e, MobStructuralEventEnvelope) for e in events)
    assert [e.cursor for e in paged][: len(events)] == [e.cursor for e in events]
    cursors = [e.cursor for e in events]
    assert cursors == sorted(set(cursors))
    activated = {e.agent_identity for e in events if e.kind == "activated"}
    assert activated == set(TEAM)
    assert edges and all(isinstance(e, ManagedPeerEdge) for e in edges)
    assert alice_edges == [e for e in edges if "alice" in (e.a, e.b)]
    assert isinstance(report, ReconcileResult) and report.failed == ()
    assert report.roster_revision > 0
    assert all(isinstance(x, Lease) for x in leases)
    assert [x.identity for x in leases] == sorted(TEAM)


def test_sync_client_round_trip(suite: ServeProcess) -> None:
    with MobKit(suite.address) as mk:
        receipt = mk.send("dave", "hello")
        statuses = list(mk.list_statuses(page_size=1))
        with mk.events(after_seq=0) as stream:
            first = [next(stream) for _ in range(3)]
            assert stream.cursor == first[-1].cursor
        leases = list(mk.providers.lease.leases())
    assert receipt.identity == "dave"
    assert [s.identity for s in statuses] == sorted(TEAM)
    assert [e.cursor for e in first] == sorted({e.cursor for e in first})
    assert len(leases) == len(TEAM)
