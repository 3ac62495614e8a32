"""``lifecycle.decide`` without I/O: every transition, every refused one, and the
effects each decision asks for, in order."""

from __future__ import annotations

import typing
from dataclasses import replace
from datetime import timedelta

import pytest

from mobkit.core.errors import InvalidArgument, InvalidTransition, NotActive
from mobkit.core.identity import AgentIdentity, AgentRuntimeId, FencingToken, SessionId
from mobkit.core.types import (
    ActivationFailure,
    AgentBuildDraft,
    Broken,
    ContinuityFailure,
    ContinuityFailureKind,
    ContinuityRecord,
    DurableAgentSpec,
    IdentityLifecycleState,
    LeaseGrant,
    Ready,
    Uninitialized,
)
from mobkit.orchestrator import life as L
from mobkit.orchestrator import lifecycle
from mobkit.orchestrator.lifecycle import decide
from mobkit.orchestrator.slot import IdentitySlot

S = IdentityLifecycleState
ID = "agent-1"
GRANT = LeaseGrant(AgentIdentity(ID), FencingToken(7), timedelta(seconds=10))
DRAFT = AgentBuildDraft()
RECORD = ContinuityRecord(AgentIdentity(ID), AgentRuntimeId("rt-1"), SessionId("s-1"), 2, 5)
FRESH = ContinuityRecord(AgentIdentity(ID), AgentRuntimeId("rt-new"), SessionId("s-new"), 0, 0)
FAILURE = ContinuityFailure(
    AgentIdentity(ID), ContinuityFailureKind.SNAPSHOT_MISSING, RECORD, "no snapshot"
)
HOSTED = L.Hosted("s-1", "rt-1", DRAFT)


def life(state: S = S.DORMANT, *, held: bool = False, hosted: bool = False) -> L.Life:
    return L.Life(
        ID,
        state,
        held=L.Held(GRANT, 0.0) if held else None,
        hosted=HOSTED if hosted else None,
        generation=2 if hosted else None,
        checkpoint_version=5 if hosted else None,
    )


ACTIVE = life(S.ACTIVE, held=True, hosted=True)


def kinds(effects: tuple[L.Effect, ...]) -> list[str]:
    return [type(e).__name__ for e in effects]


# -- every state against every transition ----------------------------------------------

# (an event whose decision is one transition, that transition, a life in ``state``)
MATRIX: list[tuple[str, L.Event, lifecycle.Transition]] = [
    ("session opened", L.SessionOpened(RECORD, DRAFT, {}, False, "me"), lifecycle.ACTIVATE),
    ("resume", L.Resume(), lifecycle.ACTIVATE),
    ("suspend", L.Suspend(), lifecycle.SUSPEND),
    ("suspend recorded", L.SuspendRecorded(), lifecycle.SUSPEND),
    ("deactivate", L.Deactivate(), lifecycle.DEACTIVATE),
    ("retire", L.Retire(forget=False), lifecycle.RETIRE),
    ("retire recorded", L.RetireRecorded(forget=False), lifecycle.RETIRE),
    ("torn down", L.TornDown(forget=False), lifecycle.REST),
]
# Events that ask for effects first and change the state only in their follow-up.
ASKS_FIRST = {"resume", "suspend", "retire"}


def _in(state: S) -> L.Life:
    return life(state, held=True, hosted=state is S.ACTIVE)


@pytest.mark.parametrize("state", list(S), ids=lambda s: s.value)
@pytest.mark.parametrize(("name", "event", "transition"), MATRIX, ids=[m[0] for m in MATRIX])
def test_each_transition_from_each_state(
    name: str, event: L.Event, transition: lifecycle.Transition, state: S
) -> None:
    if state not in transition.sources:
        with pytest.raises(InvalidTransition) as refused:
            decide(_in(state), event)
        assert (refused.value.from_state, refused.value.to_state) == (
            state.value,
            transition.target.value,
        )
        return
    after, _ = decide(_in(state), event)
    assert after.state is (state if name in ASKS_FIRST else transition.target)


@pytest.mark.parametrize("state", list(S), ids=lambda s: s.value)
def test_a_lost_lease_stops_everything_from_any_state(state: S) -> None:
    before = _in(state)
    after, effects = decide(before, L.LeaseLost("lease lost"))
    assert after.state is S.DORMANT and after.held is None and after.hosted is None
    closes = ["CloseSession"] if before.hosted else []
    assert kinds(effects) == [*closes, "Warn", "Emit"]  # not released: someone else's key
    assert effects[-1] == L.Emit("lease_lost", {"fencing_token": 7, "detail": "lease lost"})


def test_a_lost_lease_still_owned_in_etcd_is_handed_back() -> None:
    _, effects = decide(ACTIVE, L.LeaseLost("cannot restore", release=True))
    assert kinds(effects) == ["CloseSession", "ReleaseLease", "Warn", "Emit"]


def test_no_event_lacks_a_rule() -> None:
    events = typing.get_args(L.Event)
    assert len(events) >= 20
    assert set(events) == set(lifecycle._RULES)


def test_state_is_read_only_on_the_slot() -> None:
    slot = IdentitySlot(DurableAgentSpec(AgentIdentity(ID), "p"))
    with pytest.raises(AttributeError):
        slot.state = S.ACTIVE  # type: ignore[misc]


# -- decisions and their effects, table-driven ------------------------------------------

Row = tuple[str, L.Life, L.Event, S | type[Exception], list[str]]
ROWS: list[Row] = [
    # the lease
    ("acquired", life(), L.Granted(GRANT, 1.0), S.DORMANT, []),
    ("renewed", life(held=True), L.Renewed(GRANT, 2.0), S.DORMANT, []),
    ("renewal after teardown", life(), L.Renewed(GRANT, 2.0), S.DORMANT, []),
    ("unproven", life(held=True), L.Unproven(), S.DORMANT, []),
    ("unproven without a lease", life(), L.Unproven(), NotActive, []),
    # activation: fence before use, new identity or not
    (
        "new identity",
        life(held=True),
        L.Resolved(Uninitialized(), DRAFT, FRESH),
        S.DORMANT,
        ["UpsertFence", "OpenSession"],
    ),
    (
        "ready identity",
        life(S.BROKEN, held=True),
        L.Resolved(Ready(RECORD), DRAFT, FRESH),
        S.BROKEN,
        ["UpsertFence", "OpenSession"],
    ),
    (
        "broken record",
        life(held=True),
        L.Resolved(Broken(FAILURE), DRAFT, FRESH),
        S.BROKEN,
        ["Emit", "ReleaseLease", "Fail"],
    ),
    (
        "broken again",
        life(S.BROKEN, held=True),
        L.Resolved(Broken(FAILURE), DRAFT, FRESH),
        S.BROKEN,
        ["ReleaseLease", "Fail"],
    ),
    ("resolved without a lease", life(), L.Resolved(Ready(RECORD), DRAFT, FRESH), NotActive, []),
    (
        "resolved while active",
        ACTIVE,
        L.Resolved(Ready(RECORD), DRAFT, FRESH),
        InvalidTransition,
        [],
    ),
    (
        "opened fresh",
        life(held=True),
        L.SessionOpened(FRESH, DRAFT, {}, True, "me"),
        S.ACTIVE,
        ["AfterCreate", "Emit"],
    ),
    (
        "opened restored",
        life(S.SUSPENDED, held=True),
        L.SessionOpened(RECORD, DRAFT, {}, False, "me"),
        S.ACTIVE,
        ["Emit"],
    ),
    (
        "opened without a lease",
        life(),
        L.SessionOpened(RECORD, DRAFT, {}, False, "me"),
        NotActive,
        [],
    ),
    (
        "snapshot unusable",
        life(held=True),
        L.SnapshotUnusable(FAILURE),
        S.BROKEN,
        ["Emit", "ReleaseLease", "Fail"],
    ),
    ("give up", life(held=True), L.GiveUp(), S.DORMANT, ["ReleaseLease"]),
    (
        "give up, new failure",
        life(held=True),
        L.GiveUp(ActivationFailure("UNAVAILABLE", "down", 1)),
        S.DORMANT,
        ["Warn", "Emit", "ReleaseLease"],
    ),
    (
        "give up, same failure",
        replace(life(held=True), activation_failure=ActivationFailure("UNAVAILABLE", "down", 1)),
        L.GiveUp(ActivationFailure("UNAVAILABLE", "down", 2)),
        S.DORMANT,
        ["ReleaseLease"],
    ),
    # on purpose
    ("profile change", ACTIVE, L.Deactivate(), S.DORMANT, ["CloseSession", "ReleaseLease"]),
    ("drain", ACTIVE, L.Deactivate("me"), S.DORMANT, ["CloseSession", "ReleaseLease", "Emit"]),
    ("drain a dormant one", life(held=True), L.Deactivate("me"), InvalidTransition, []),
    ("shutdown active", ACTIVE, L.Shutdown(), S.DORMANT, ["CloseSession", "ReleaseLease"]),
    (
        "shutdown suspended",
        life(S.SUSPENDED, held=True),
        L.Shutdown(),
        S.SUSPENDED,
        ["ReleaseLease"],
    ),
    ("shutdown vacant", life(S.BROKEN), L.Shutdown(), S.BROKEN, []),
    # operator commands
    ("suspend", ACTIVE, L.Suspend(), S.ACTIVE, ["RecordIntent", "Next"]),
    ("suspend recorded", ACTIVE, L.SuspendRecorded(), S.SUSPENDED, ["CloseSession", "Emit"]),
    ("resume", life(S.SUSPENDED, held=True), L.Resume(), S.SUSPENDED, ["RecordIntent", "Next"]),
    ("resume an active one", ACTIVE, L.Resume(), InvalidTransition, []),
    ("resume recorded", life(S.SUSPENDED, held=True), L.ResumeRecorded(), S.DORMANT, []),
    ("retire", ACTIVE, L.Retire(forget=False), S.ACTIVE, ["RecordIntent", "Next"]),
    ("roster removal", ACTIVE, L.Retire(forget=True), S.ACTIVE, ["ClearIntent", "Next"]),
    (
        "retire recorded",
        ACTIVE,
        L.RetireRecorded(forget=False),
        S.RETIRING,
        ["CloseSession", "ReleaseLease", "Next"],
    ),
    ("retired", life(S.RETIRING), L.TornDown(forget=False), S.DORMANT, ["Emit"]),
    ("removed", life(S.RETIRING), L.TornDown(forget=True), S.DORMANT, ["Forget", "Emit"]),
    ("retire twice", life(S.RETIRING), L.Retire(forget=False), InvalidTransition, []),
    # intents seen in the fleet
    ("seen suspended", life(), L.IntentSeen(L.SUSPENDED), S.SUSPENDED, []),
    ("seen resumed", life(S.SUSPENDED), L.IntentSeen(None), S.DORMANT, []),
    ("broken seen suspended", life(S.BROKEN), L.IntentSeen(L.SUSPENDED), S.BROKEN, []),
    ("hosted here", life(S.DORMANT, held=True), L.IntentSeen(L.SUSPENDED), S.DORMANT, []),
    # within Active
    ("checkpointed", ACTIVE, L.Checkpointed(6), S.ACTIVE, []),
    ("rewound", ACTIVE, L.Rewound(RECORD, {}), S.ACTIVE, []),
    ("rewound elsewhere", ACTIVE, L.Rewound(FRESH, {}), InvalidArgument, []),
    ("rewound while dormant", life(held=True), L.Rewound(RECORD, {}), NotActive, []),
    (
        "reset",
        ACTIVE,
        L.Regenerated(replace(FRESH, generation=3), "r1"),
        S.ACTIVE,
        ["CloseSession", "Emit"],
    ),
    (
        "reset while suspended",
        life(S.SUSPENDED, held=True),
        L.Regenerated(FRESH, ""),
        NotActive,
        [],
    ),
]


@pytest.mark.parametrize(
    ("name", "before", "event", "expect", "effects"), ROWS, ids=[r[0] for r in ROWS]
)
def test_decision(
    name: str, before: L.Life, event: L.Event, expect: S | type[Exception], effects: list[str]
) -> None:
    if isinstance(expect, type):
        with pytest.raises(expect):
            decide(before, event)
        return
    after, done = decide(before, event)
    assert after.state is expect
    assert kinds(done) == effects


def test_fence_before_use_names_the_session_to_open() -> None:
    for resolved, record in ((Uninitialized(), FRESH), (Ready(RECORD), RECORD)):
        _, (fence, open_) = decide(life(held=True), L.Resolved(resolved, DRAFT, FRESH))
        assert fence == L.UpsertFence(record, GRANT)
        assert isinstance(open_, L.OpenSession) and open_.record == record


def test_activation_resets_what_depends_on_it() -> None:
    before = replace(
        life(S.BROKEN, held=True),
        failure=FAILURE,
        activation_failure=ActivationFailure("UNAVAILABLE", "down"),
    )
    after, _ = decide(before, L.SessionOpened(RECORD, DRAFT, {}, False, "me"))
    assert after.hosted == L.Hosted("s-1", "rt-1", DRAFT, {})
    assert (after.generation, after.checkpoint_version) == (2, 5)
    assert after.failure is None and after.activation_failure is None


def test_a_renewal_never_revives_a_grant_torn_down_meanwhile() -> None:
    other = replace(GRANT, fencing_token=FencingToken(8))
    assert decide(life(), L.Renewed(GRANT, 2.0))[0].held is None
    assert decide(life(held=True), L.Renewed(other, 2.0))[0].held == L.Held(GRANT, 0.0)
    assert decide(life(held=True), L.Renewed(GRANT, 2.0))[0].held == L.Held(GRANT, 2.0)


def test_suspend_keeps_the_lease_and_resume_clears_retired() -> None:
    after, _ = decide(ACTIVE, L.SuspendRecorded())
    assert after.held == ACTIVE.held and after.hosted is None
    retired = replace(life(), retired=True)
    assert decide(retired, L.ResumeRecorded())[0].retired is False
    assert decide(life(), L.IntentSeen(L.RETIRED))[0].retired is True


def test_reset_starts_a_generation_and_remembers_its_request() -> None:
    after, effects = decide(ACTIVE, L.Regenerated(replace(FRESH, generation=3), "r1"))
    assert after.hosted is not None and after.hosted.session_id == "s-new"
    assert (after.generation, after.checkpoint_version, after.last_reset) == (3, 0, ("r1", 3))
    assert effects[0] == L.CloseSession("s-1")


def test_a_grant_for_another_identity_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        decide(life(), L.Granted(replace(GRANT, identity=AgentIdentity("other")), 0.0))
