"""Runtime sessions for identities: the build draft (customizer and topology), a
fresh session under ids already fenced, or one restored from its last checkpoint."""

from __future__ import annotations

from collections import OrderedDict

from mobkit.core.errors import StoreCorruption
from mobkit.core.identity import AgentIdentity
from mobkit.core.types import (
    AgentBuildContext,
    AgentBuildDraft,
    ContinuityFailure,
    ContinuityFailureKind,
    ContinuityRecord,
    DispatchReceipt,
    DurableAgentSpec,
)
from mobkit.orchestrator import checkpoint
from mobkit.orchestrator.life import BrokenIdentity
from mobkit.orchestrator.replica import Replica


class Sessions:
    def __init__(self, r: Replica) -> None:
        self.r = r

    async def build_draft(self, spec: DurableAgentSpec) -> AgentBuildDraft:
        edges = tuple(self.r.edges_of.get(spec.identity, ()))
        peers = tuple(sorted(AgentIdentity(p) for e in edges if (p := e.other(spec.identity))))
        context = AgentBuildContext(spec.identity, active_peers=peers, managed_edges=edges)
        return await self.r.p.customizer.customize_build(context, spec, AgentBuildDraft())

    async def create(
        self, spec: DurableAgentSpec, record: ContinuityRecord, draft: AgentBuildDraft
    ) -> None:
        """A fresh session under the ids ``record`` names (already fenced)."""
        await self.r.p.runtime.create_session(
            spec.identity,
            self.r.kind(spec),
            draft,
            session_id=record.session_id,
            agent_runtime_id=record.agent_runtime_id,
        )

    async def restore(
        self, spec: DurableAgentSpec, record: ContinuityRecord, draft: AgentBuildDraft
    ) -> tuple[ContinuityRecord, OrderedDict[str, DispatchReceipt]]:
        """The session of ``record`` resumed from its snapshot (``BrokenIdentity``: the
        snapshot is missing or corrupt)."""
        receipts: OrderedDict[str, DispatchReceipt] = OrderedDict()
        if record.checkpoint_version == 0:
            # Created but never checkpointed: nothing to restore beyond the ids.
            await self.create(spec, record, draft)
            return record, receipts
        try:
            loaded = await self.r.p.continuity.load_session_snapshot(record.session_id)
        except StoreCorruption as exc:
            raise BrokenIdentity(
                ContinuityFailure(
                    spec.identity, ContinuityFailureKind.SNAPSHOT_CORRUPTED, record, exc.message
                )
            ) from exc
        if loaded is None:
            raise BrokenIdentity(
                ContinuityFailure(
                    spec.identity,
                    ContinuityFailureKind.SNAPSHOT_MISSING,
                    record,
                    f"no snapshot for session {record.session_id}",
                )
            )
        runtime_snapshot, receipts = checkpoint.decode(spec.identity, loaded.snapshot)
        await self.r.p.runtime.resume_session(
            spec.identity,
            self.r.kind(spec),
            record.session_id,
            record.agent_runtime_id,
            runtime_snapshot,
            draft,
        )
        return record, receipts
