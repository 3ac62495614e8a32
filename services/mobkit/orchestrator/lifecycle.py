"""The identity lifecycle as an explicit, guarded state machine.

Each thing that can happen to an identity is one named ``Transition`` with the states
it may start from; anything else is INVALID_TRANSITION. Only ``IdentitySlot``'s
methods apply them (together with the fields that depend on the state), and no
transition leads from a state back to itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from mobkit.core.errors import InvalidTransition
from mobkit.core.types import IdentityLifecycleState as S


@dataclass(frozen=True)
class Transition:
    name: str
    sources: frozenset[S]
    target: S

    def check(self, identity: str, current: S) -> None:
        if current not in self.sources:
            raise InvalidTransition(identity, current.value, self.target.value)


_RESUMABLE = frozenset({S.UNINITIALIZED, S.DORMANT, S.SUSPENDED, S.BROKEN})

# A session built (activation) or an operator's ResumeIdentity accepted.
ACTIVATE = Transition("activate", _RESUMABLE, S.ACTIVE)
# Its continuity record or snapshot cannot be used (a new failure while Broken is
# recorded on the slot, no transition).
BREAK = Transition("break", frozenset({S.UNINITIALIZED, S.DORMANT, S.ACTIVE}), S.BROKEN)
# The operator's SuspendIdentity: the session closes, the lease stays.
SUSPEND = Transition("suspend", frozenset({S.ACTIVE}), S.SUSPENDED)
# A suspend recorded in the fleet by another replica (or by this one before a restart).
SEEN_SUSPENDED = Transition("seen_suspended", frozenset({S.UNINITIALIZED, S.DORMANT}), S.SUSPENDED)
# The suspend intent is cleared (ResumeIdentity, here or elsewhere).
UNSUSPEND = Transition("unsuspend", frozenset({S.SUSPENDED}), S.DORMANT)
# The session stops here on purpose (a drain, a profile change, a suspend's first step).
DEACTIVATE = Transition("deactivate", frozenset({S.ACTIVE}), S.DORMANT)
# Retiring: the session and the lease go; then the identity rests, retired.
RETIRE = Transition("retire", frozenset(S) - {S.RETIRING}, S.RETIRING)
RETIRED = Transition("retired", frozenset({S.RETIRING}), S.DORMANT)
# The lease is lost (or can no longer be proven): whatever ran stops at once.
LOSE = Transition("lose", frozenset(S) - {S.DORMANT}, S.DORMANT)
