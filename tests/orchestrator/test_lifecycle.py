"""The identity lifecycle: named transitions, applied only through the slot (which
asks ``lifecycle.decide``), resetting what depends on the state together."""

from __future__ import annotations

from collections import OrderedDict
from datetime import timedelta

import pytest

from mobkit.core.errors import InvalidTransition
from mobkit.core.identity import AgentIdentity, AgentRuntimeId, SessionId
from mobkit.core.types import (
    AgentBuildDraft,
    ContinuityRecord,
    DurableAgentSpec,
    IdentityLifecycleState,
    LeaseGrant,
)
from mobkit.orchestrator import lifecycle
from mobkit.orchestrator.life import (
    CloseSession,
    Effect,
    Granted,
    IntentSeen,
    LeaseLost,
    ReleaseLease,
    RetireRecorded,
    SessionOpened,
    SuspendRecorded,
    TornDown,
)
from mobkit.orchestrator.slot import IdentitySlot

S = IdentityLifecycleState
TRANSITIONS = [t for t in vars(lifecycle).values() if isinstance(t, lifecycle.Transition)]


def _gone(effects: tuple[Effect, ...]) -> tuple[str | None, LeaseGrant | None]:
    """The session closed and the grant released by a decision's teardown."""
    closed = [e.session_id for e in effects if isinstance(e, CloseSession)]
    released = [e.grant for e in effects if isinstance(e, ReleaseLease)]
    return (closed[0] if closed else None), (released[0] if released else None)


def _slot() -> IdentitySlot:
    return IdentitySlot(DurableAgentSpec(AgentIdentity("agent-1"), "notebook"))


def _active() -> IdentitySlot:
    slot = _slot()
    slot.apply(Granted(LeaseGrant(AgentIdentity("agent-1"), 7, timedelta(seconds=10)), 0.0))
    record = ContinuityRecord(
        AgentIdentity("agent-1"), AgentRuntimeId("rt-1"), SessionId("s-1"), 0, 3
    )
    slot.apply(SessionOpened(record, AgentBuildDraft(), OrderedDict(), False, "me"))
    return slot


def test_no_transition_leads_back_to_where_it_started() -> None:
    assert len(TRANSITIONS) >= 9
    for transition in TRANSITIONS:
        assert transition.target not in transition.sources, transition.name


def test_activation_sets_the_session_behind_an_open_gate() -> None:
    slot = _active()
    assert slot.state is S.ACTIVE
    assert (slot.session_id, slot.agent_runtime_id, slot.checkpoint_version) == ("s-1", "rt-1", 3)
    assert slot.gate is not None and not slot.gate.closed


def test_an_active_identity_cannot_be_activated_or_resumed_again() -> None:
    slot = _active()
    with pytest.raises(InvalidTransition):
        lifecycle.ACTIVATE.check(slot.identity, slot.state)


def test_only_an_active_identity_can_be_suspended() -> None:
    with pytest.raises(InvalidTransition):
        _slot().apply(SuspendRecorded())
    slot = _active()
    gate = slot.gate
    session_id, grant = _gone(slot.apply(SuspendRecorded()))
    assert slot.state is S.SUSPENDED and gate is not None and gate.closed
    assert session_id == "s-1" and grant is None  # the lease is kept
    assert slot.grant is not None and slot.session_id is None


def test_losing_the_lease_forgets_session_and_grant_from_any_state() -> None:
    slot = _active()
    session_id, grant = _gone(slot.apply(LeaseLost("lost", release=True)))
    assert slot.state is S.DORMANT
    assert session_id == "s-1" and grant is not None
    assert slot.grant is None and slot.session_id is None and slot.gate is None
    # already Dormant: nothing left to forget
    again = _gone(slot.apply(LeaseLost("lost", release=True)))
    assert slot.state is S.DORMANT and again == (None, None)


def test_retiring_then_retired_rests_dormant_and_retired() -> None:
    slot = _active()
    _, grant = _gone(slot.apply(RetireRecorded(forget=False)))
    assert slot.state is S.RETIRING and grant is not None and slot.grant is None
    with pytest.raises(InvalidTransition):
        slot.apply(RetireRecorded(forget=False))
    slot.apply(TornDown(forget=False))
    assert slot.state is S.DORMANT and slot.retired


def test_an_intent_seen_in_the_fleet_suspends_and_unsuspends_a_slot_hosted_elsewhere() -> None:
    slot = _slot()
    slot.apply(IntentSeen("suspended"))
    assert slot.state is S.SUSPENDED and not slot.retired
    slot.apply(IntentSeen(None))
    assert slot.state is S.DORMANT
    slot.apply(IntentSeen("retired"))
    assert slot.state is S.DORMANT and slot.retired
