"""The identity lifecycle: named transitions, applied only by the slot, which resets
what depends on the state together."""

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
from mobkit.orchestrator.slot import IdentitySlot

S = IdentityLifecycleState
TRANSITIONS = [t for t in vars(lifecycle).values() if isinstance(t, lifecycle.Transition)]


def _slot() -> IdentitySlot:
    return IdentitySlot(DurableAgentSpec(AgentIdentity("agent-1"), "notebook"))


def _active() -> IdentitySlot:
    slot = _slot()
    slot.granted(LeaseGrant(AgentIdentity("agent-1"), 7, timedelta(seconds=10)), 0.0)
    record = ContinuityRecord(
        AgentIdentity("agent-1"), AgentRuntimeId("rt-1"), SessionId("s-1"), 0, 3
    )
    slot.become_active(record, AgentBuildDraft(), OrderedDict())
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
        _slot().become_suspended()
    slot = _active()
    gate = slot.gate
    gone = slot.become_suspended()
    assert slot.state is S.SUSPENDED and gate is not None and gate.closed
    assert gone.session_id == "s-1" and gone.grant is None  # the lease is kept
    assert slot.grant is not None and slot.session_id is None


def test_losing_the_lease_forgets_session_and_grant_from_any_state() -> None:
    slot = _active()
    gone = slot.lose()
    assert slot.state is S.DORMANT
    assert gone.session_id == "s-1" and gone.grant is not None
    assert slot.grant is None and slot.session_id is None and slot.gate is None
    again = slot.lose()  # already Dormant: nothing left to forget
    assert slot.state is S.DORMANT and again.session_id is None and again.grant is None


def test_retiring_then_retired_rests_dormant_and_retired() -> None:
    slot = _active()
    gone = slot.become_retiring()
    assert slot.state is S.RETIRING and gone.grant is not None and slot.grant is None
    with pytest.raises(InvalidTransition):
        slot.become_retiring()
    slot.become_retired()
    assert slot.state is S.DORMANT and slot.retired


def test_an_intent_seen_in_the_fleet_suspends_and_unsuspends_a_slot_hosted_elsewhere() -> None:
    slot = _slot()
    slot.observe_intent("suspended", suspended="suspended", retired="retired")
    assert slot.state is S.SUSPENDED and not slot.retired
    slot.observe_intent(None, suspended="suspended", retired="retired")
    assert slot.state is S.DORMANT
    slot.observe_intent("retired", suspended="suspended", retired="retired")
    assert slot.state is S.DORMANT and slot.retired
