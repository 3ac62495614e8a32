"""The customizer's port (CONTRACT-04). No gRPC here.

``customize_build`` returns the changed draft (the input is left as it was, so
a retry starts from the same draft). It refuses a build by raising
:class:`~mobkit.core.errors.CustomizerFailed` (CUSTOMIZER_FAILED).
``after_create`` is best-effort: callers use :func:`after_create_best_effort`,
which logs a failure and never fails the build.
"""

from __future__ import annotations

import copy
import logging
from typing import Protocol, runtime_checkable

from mobkit.core.types import AgentBuildContext, AgentBuildDraft, DurableAgentSpec, JsonValue

log = logging.getLogger("mobkit.customizer")


@runtime_checkable
class AgentCustomizer(Protocol):
    async def customize_build(
        self, context: AgentBuildContext, spec: DurableAgentSpec, draft: AgentBuildDraft
    ) -> AgentBuildDraft: ...

    async def after_create(
        self, identity: str, session_id: str, context: JsonValue | None
    ) -> None: ...


async def after_create_best_effort(
    customizer: AgentCustomizer, identity: str, session_id: str, context: JsonValue | None
) -> bool:
    """Notify the customizer; a failure is logged, not raised. Returns whether it succeeded."""
    try:
        await customizer.after_create(identity, session_id, context)
    except Exception as exc:  # best-effort by contract: the session exists either way
        log.warning(
            "after_create for %s (session %s) failed: %s",
            identity,
            session_id,
            exc,
            extra={"identity": identity, "session_id": session_id},
        )
        return False
    return True


def copy_draft(draft: AgentBuildDraft) -> AgentBuildDraft:
    """A deep copy: customizing never changes the caller's draft."""
    return copy.deepcopy(draft)
