"""The identity lifecycle as a pure decision: ``decide(life, event) -> (life, effects)``.

Each change of state is one named ``Transition`` with the states it may start from;
anything else is INVALID_TRANSITION, and no transition leads from a state back to
itself. ``decide`` applies them together with every field that depends on the state
(as etcd raft's ``become*`` do) and returns the I/O to perform, in order (``life``'s
effects), which ``effects.Runner`` alone carries out. Nothing here does I/O or reads a
clock, so every rule is tested without a server (tests/orchestrator/test_decide.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from mobkit.core.errors import InvalidArgument, InvalidTransition, NotActive
from mobkit.core.types import Broken, Ready, Uninitialized
from mobkit.orchestrator import life as L
from mobkit.orchestrator.life import RETIRED, SUSPENDED, Life, S


@dataclass(frozen=True)
class Transition:
    name: str
    sources: frozenset[S]
    target: S

    def check(self, identity: str, current: S) -> None:
        if current not in self.sources:
            raise InvalidTransition(identity, current.value, self.target.value)

    def apply(self, life: Life) -> Life:
        self.check(life.identity, life.state)
        return replace(life, state=self.target)


_RESUMABLE = frozenset({S.UNINITIALIZED, S.DORMANT, S.SUSPENDED, S.BROKEN})

# A session built (activation) or an operator's ResumeIdentity accepted.
ACTIVATE = Transition("activate", _RESUMABLE, S.ACTIVE)
# Its continuity record or snapshot cannot be used (a new failure while Broken is
# recorded, no transition).
BREAK = Transition("break", frozenset({S.UNINITIALIZED, S.DORMANT, S.ACTIVE}), S.BROKEN)
# The operator's SuspendIdentity: the session closes, the lease stays.
SUSPEND = Transition("suspend", frozenset({S.ACTIVE}), S.SUSPENDED)
# A suspend recorded in the fleet by another replica (or by this one before a restart).
SEEN_SUSPENDED = Transition("seen_suspended", frozenset({S.UNINITIALIZED, S.DORMANT}), S.SUSPENDED)
# The suspend intent is cleared (ResumeIdentity, here or elsewhere).
UNSUSPEND = Transition("unsuspend", frozenset({S.SUSPENDED}), S.DORMANT)
# The session stops here on purpose (a drain, a profile change, a shutdown).
DEACTIVATE = Transition("deactivate", frozenset({S.ACTIVE}), S.DORMANT)
# Retiring: the session and the lease go; then the identity rests, retired.
RETIRE = Transition("retire", frozenset(S) - {S.RETIRING}, S.RETIRING)
REST = Transition("retired", frozenset({S.RETIRING}), S.DORMANT)
# The lease is lost (or can no longer be proven): whatever ran stops at once.
LOSE = Transition("lose", frozenset(S) - {S.DORMANT}, S.DORMANT)

Decision = tuple[Life, tuple[L.Effect, ...]]


def decide(life: Life, event: L.Event) -> Decision:
    """The next state of ``life`` after ``event`` and the effects to perform, in order.
    Raises (InvalidTransition, NotActive) when the event is refused in this state."""
    rule = _RULES.get(type(event))
    if rule is None:
        raise InvalidArgument("event", f"no lifecycle rule for {event!r}")
    return rule(life, event)


def _stand_down(life: Life, *, keep_grant: bool = False, release: bool = True) -> Decision:
    """The one teardown: forget the session (its gate closes with it) and, unless
    ``keep_grant``, the grant; close the session, then hand the lease back."""
    effects: list[L.Effect] = []
    if life.hosted is not None:
        effects.append(L.CloseSession(life.hosted.session_id))
    if not keep_grant and release and life.held is not None:
        effects.append(L.ReleaseLease(life.held.grant))
    return replace(life, hosted=None, held=life.held if keep_grant else None), tuple(effects)


def _require_held(life: Life) -> L.Held:
    if life.held is None:
        raise NotActive(life.identity, "lease_lost")
    return life.held


# -- the lease -------------------------------------------------------------------------


def _granted(life: Life, e: L.Granted) -> Decision:
    if e.grant.identity != life.identity:
        raise InvalidArgument("grant", f"a grant for {e.grant.identity!r}, not {life.identity!r}")
    return replace(life, held=L.Held(e.grant, e.at)), ()


def _renewed(life: Life, e: L.Renewed) -> Decision:
    if life.held is None or life.held.grant.fencing_token != e.grant.fencing_token:
        return life, ()
    return replace(life, held=L.Held(e.grant, e.at)), ()


def _unproven(life: Life, _: L.Unproven) -> Decision:
    held = _require_held(life)
    return replace(life, held=replace(held, healthy=False)), ()


def _lease_lost(life: Life, e: L.LeaseLost) -> Decision:
    token = life.held.grant.fencing_token if life.held is not None else None
    # With ``release``, still the owner in etcd: hand the identity back so anyone can
    # resume it. Without, the key is someone else's (or gone): keep off it.
    after, teardown = _stand_down(life, release=e.release)
    if after.state is not S.DORMANT:  # Dormant (being activated): only the grant goes
        after = LOSE.apply(after)
    return after, (
        *teardown,
        L.Warn(f"{e.why}; torn down"),
        L.Emit("lease_lost", {"fencing_token": token, "detail": e.why}),
    )


# -- activation ------------------------------------------------------------------------


def _resolved(life: Life, e: L.Resolved) -> Decision:
    held = _require_held(life)
    ACTIVATE.check(life.identity, life.state)
    state = e.resolved
    if isinstance(state, Broken):
        return _broken(life, state.failure)
    # Fence first, for a new identity as for a Ready one: the record (and our token,
    # now the highest this identity has seen) lands before the session it names is
    # built or used.
    if isinstance(state, Uninitialized):
        record, fresh = e.fresh, True
    elif isinstance(state, Ready):
        record, fresh = state.record, False
    else:
        raise InvalidArgument("continuity", f"unexpected resolve state {state!r}")
    return life, (L.UpsertFence(record, held.grant), L.OpenSession(record, e.draft, fresh))


def _session_opened(life: Life, e: L.SessionOpened) -> Decision:
    held = _require_held(life)
    record = e.record
    after = ACTIVATE.apply(life)
    after = replace(
        after,
        hosted=L.Hosted(record.session_id, record.agent_runtime_id, e.draft, e.receipts),
        generation=record.generation,
        checkpoint_version=record.checkpoint_version,
        failure=None,
        activation_failure=None,
    )
    hook: tuple[L.Effect, ...] = (L.AfterCreate(record.session_id),) if e.fresh else ()
    return after, (
        *hook,
        L.Emit(
            "activated",
            {
                "session_id": record.session_id,
                "fencing_token": held.grant.fencing_token,
                "generation": record.generation,
                "checkpoint_version": record.checkpoint_version,
                "owner": e.owner,
            },
        ),
    )


def _broken(life: Life, failure: L.ContinuityFailure) -> Decision:
    """Record why continuity failed, hand the grant back and fail the activation; the
    event only when the identity just became Broken."""
    after = replace(life, failure=failure)
    news: tuple[L.Effect, ...] = ()
    if life.state is not S.BROKEN:
        after = BREAK.apply(after)
        news = (L.Emit("broken", {"kind": failure.kind.value, "detail": failure.detail}),)
    after, teardown = _stand_down(after)
    return after, (*news, *teardown, L.Fail(L.BrokenIdentity(failure)))


def _snapshot_unusable(life: Life, e: L.SnapshotUnusable) -> Decision:
    _require_held(life)
    return _broken(life, e.failure)


def _give_up(life: Life, e: L.GiveUp) -> Decision:
    after, teardown = _stand_down(life)
    failure, known = e.failure, life.activation_failure
    if failure is None or (
        known is not None and (known.reason, known.message) == (failure.reason, failure.message)
    ):
        return after, teardown  # a repeated failure is logged and reported once
    return replace(after, activation_failure=failure), (
        L.Warn(f"cannot be activated: {failure.reason}: {failure.message}"),
        L.Emit("activation_failed", {"reason": failure.reason, "message": failure.message}),
        *teardown,
    )


# -- on purpose ------------------------------------------------------------------------


def _deactivate(life: Life, e: L.Deactivate) -> Decision:
    after, teardown = _stand_down(DEACTIVATE.apply(life))
    if e.drained_by is None:
        return after, teardown
    return after, (*teardown, L.Emit("drained", {"owner": e.drained_by}))


def _shutdown(life: Life, _: L.Shutdown) -> Decision:
    return _stand_down(DEACTIVATE.apply(life) if life.state is S.ACTIVE else life)


# -- operator commands -----------------------------------------------------------------


def _suspend(life: Life, _: L.Suspend) -> Decision:
    SUSPEND.check(life.identity, life.state)
    return life, (L.RecordIntent(SUSPENDED), L.Next(L.SuspendRecorded()))


def _suspend_recorded(life: Life, _: L.SuspendRecorded) -> Decision:
    after, teardown = _stand_down(SUSPEND.apply(life), keep_grant=True)
    return after, (*teardown, L.Emit("suspended", {}))


def _resume(life: Life, _: L.Resume) -> Decision:
    ACTIVATE.check(life.identity, life.state)
    return life, (L.RecordIntent(None), L.Next(L.ResumeRecorded()))


def _resume_recorded(life: Life, _: L.ResumeRecorded) -> Decision:
    after = replace(life, retired=False)
    if after.state is S.SUSPENDED:  # rests as Dormant until its session is built
        after = UNSUSPEND.apply(after)
    return after, ()


def _retire(life: Life, e: L.Retire) -> Decision:
    """An operator's retire is recorded first, so no other replica claims the identity
    once its lease is released; a roster removal clears the intent instead (every
    replica does so, best effort), so adding the identity back resumes it."""
    RETIRE.check(life.identity, life.state)
    record: L.Effect = L.ClearIntent() if e.forget else L.RecordIntent(RETIRED)
    return life, (record, L.Next(L.RetireRecorded(e.forget)))


def _retire_recorded(life: Life, e: L.RetireRecorded) -> Decision:
    after, teardown = _stand_down(RETIRE.apply(life))
    return after, (*teardown, L.Next(L.TornDown(e.forget)))


def _torn_down(life: Life, e: L.TornDown) -> Decision:
    after = replace(REST.apply(life), retired=True)
    forget: tuple[L.Effect, ...] = (L.Forget(),) if e.forget else ()
    return after, (*forget, L.Emit("retired", {}))


def _intent_seen(life: Life, e: L.IntentSeen) -> Decision:
    if life.held is not None:
        return life, ()  # hosted here: this replica's own view is the truth
    after = replace(life, retired=e.intent == RETIRED)
    if e.intent == SUSPENDED and after.state in SEEN_SUSPENDED.sources:
        after = SEEN_SUSPENDED.apply(after)
    elif e.intent != SUSPENDED and after.state is S.SUSPENDED:
        after = UNSUSPEND.apply(after)
    return after, ()


# -- within Active: fields that follow the session -------------------------------------


def _hosted(life: Life) -> L.Hosted:
    if life.state is not S.ACTIVE or life.hosted is None or life.held is None:
        raise NotActive(life.identity, life.state.value)
    return life.hosted


def _checkpointed(life: Life, e: L.Checkpointed) -> Decision:
    # The store holds it, even if the session stood down while it was being written.
    return replace(life, checkpoint_version=e.version), ()


def _rewound(life: Life, e: L.Rewound) -> Decision:
    hosted = _hosted(life)
    if e.record.session_id != hosted.session_id:
        raise InvalidArgument("continuity", f"rewound to another session: {e.record}")
    return replace(
        life,
        hosted=replace(hosted, receipts=e.receipts),
        generation=e.record.generation,
        checkpoint_version=e.record.checkpoint_version,
    ), ()


def _regenerated(life: Life, e: L.Regenerated) -> Decision:
    hosted = _hosted(life)
    record = e.record
    fresh = L.Hosted(record.session_id, record.agent_runtime_id, hosted.draft)
    after = replace(
        life,
        hosted=fresh,
        generation=record.generation,
        checkpoint_version=0,
        last_reset=(e.request_id, record.generation) if e.request_id else None,
    )
    return after, (
        L.CloseSession(hosted.session_id),
        L.Emit("reset", {"generation": record.generation, "session_id": record.session_id}),
    )


_RULES: dict[type, Callable[[Life, Any], Decision]] = {
    L.Granted: _granted,
    L.Renewed: _renewed,
    L.Unproven: _unproven,
    L.LeaseLost: _lease_lost,
    L.Resolved: _resolved,
    L.SessionOpened: _session_opened,
    L.SnapshotUnusable: _snapshot_unusable,
    L.GiveUp: _give_up,
    L.Deactivate: _deactivate,
    L.Shutdown: _shutdown,
    L.Suspend: _suspend,
    L.SuspendRecorded: _suspend_recorded,
    L.Resume: _resume,
    L.ResumeRecorded: _resume_recorded,
    L.Retire: _retire,
    L.RetireRecorded: _retire_recorded,
    L.TornDown: _torn_down,
    L.IntentSeen: _intent_seen,
    L.Checkpointed: _checkpointed,
    L.Rewound: _rewound,
    L.Regenerated: _regenerated,
}
