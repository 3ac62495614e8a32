"""The identity lifecycle as an explicit, guarded state machine."""

from __future__ import annotations

from mobkit.core.errors import InvalidTransition
from mobkit.core.types import IdentityLifecycleState as S

# from-state -> states it may move to. Anything else is INVALID_TRANSITION.
TRANSITIONS: dict[S, frozenset[S]] = {
    S.UNINITIALIZED: frozenset({S.ACTIVE, S.BROKEN, S.DORMANT, S.RETIRING}),
    S.DORMANT: frozenset({S.ACTIVE, S.BROKEN, S.UNINITIALIZED, S.RETIRING, S.DORMANT}),
    S.ACTIVE: frozenset({S.ACTIVE, S.SUSPENDED, S.RETIRING, S.DORMANT, S.BROKEN}),
    S.SUSPENDED: frozenset({S.ACTIVE, S.RETIRING, S.DORMANT}),
    S.BROKEN: frozenset({S.ACTIVE, S.RETIRING, S.DORMANT, S.BROKEN}),
    S.RETIRING: frozenset({S.DORMANT}),
}


def check_transition(identity: str, current: S, target: S) -> None:
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(identity, current.value, target.value)
