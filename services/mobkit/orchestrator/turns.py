"""Turns: running one on the owner under its fencing token, checkpointing it with its
receipt, replaying a repeated idempotency key, and rewinding to the store when a
checkpoint's outcome is unknown."""

from __future__ import annotations

import asyncio
import logging

from mobkit.continuity.domain import TurnReceipt
from mobkit.core.errors import (
    BackendFull,
    InvalidArgument,
    NotActive,
    NotAddressable,
    StaleFencingToken,
    TopologyViolation,
)
from mobkit.core.identity import AgentIdentity, SessionId
from mobkit.core.types import (
    AgentAddressability,
    AgentBuildDraft,
    Checkpoint,
    DispatchInput,
    DispatchOrigin,
    DispatchReceipt,
    ManagedPeerEdge,
    Ready,
)
from mobkit.observability import metrics
from mobkit.orchestrator import checkpoint
from mobkit.orchestrator.activation import Activation
from mobkit.orchestrator.forwarding import Forwarding
from mobkit.orchestrator.inputs import check_dispatch_input
from mobkit.orchestrator.life import Checkpointed, Rewound
from mobkit.orchestrator.ports import resolve_states
from mobkit.orchestrator.replica import PEER_CALL_TIMEOUT, Replica, S
from mobkit.orchestrator.slot import IdentitySlot
from mobkit.orchestrator.upkeep import Upkeep
from mobkit.runtime.domain import SessionNotFound, TurnOutcome
from mobkit.runtime.sdk import ProgressSink

log = logging.getLogger("mobkit.orchestrator")


class Turns:
    def __init__(
        self, r: Replica, upkeep: Upkeep, activation: Activation, forwarding: Forwarding
    ) -> None:
        self.r = r
        self.upkeep = upkeep
        self.activation = activation
        self.forwarding = forwarding

    async def send(
        self,
        identity: str,
        message: DispatchInput,
        *,
        forwarded: bool = False,
        timeout: float | None = None,
        progress: ProgressSink | None = None,
    ) -> DispatchReceipt:
        """A turn from outside the mob (an internal-only identity refuses it).
        ``progress`` sees the turn's progress, here or forwarded from its owner."""
        if self.r.slot(identity).spec.addressability is AgentAddressability.INTERNAL_ONLY:
            raise NotAddressable(identity)
        return await self._deliver(identity, message, False, forwarded, timeout, progress)

    async def dispatch(
        self,
        identity: str,
        message: DispatchInput,
        *,
        forwarded: bool = False,
        timeout: float | None = None,
        progress: ProgressSink | None = None,
        fresh_key: bool = False,
    ) -> DispatchReceipt:
        """A turn from the mob itself (a flow, a peer), whatever the addressability.
        ``fresh_key``: the caller knows no turn has used the key yet (a new ticket's
        first attempt), so the store is not asked for its receipt."""
        return await self._deliver(
            identity, message, True, forwarded, timeout, progress, fresh_key=fresh_key
        )

    async def _deliver(
        self,
        identity: str,
        message: DispatchInput,
        dispatch: bool,
        forwarded: bool,
        timeout: float | None,
        progress: ProgressSink | None = None,
        *,
        fresh_key: bool = False,
    ) -> DispatchReceipt:
        slot = self.r.slot(identity)
        check_dispatch_input(message)
        return await self.forwarding.deliver(
            slot,
            message,
            lambda: self._here(slot, message, progress, check_replay=not fresh_key),
            dispatch=dispatch,
            forwarded=forwarded,
            timeout=timeout,
            progress=progress,
        )

    async def _here(
        self,
        slot: IdentitySlot,
        message: DispatchInput,
        progress: ProgressSink | None = None,
        *,
        check_replay: bool = True,
    ) -> DispatchReceipt | None:
        """The turn on this replica: a replay of its key, or a new turn; None when the
        identity is not (or no longer) Active here."""
        async with slot.lock:
            key = message.idempotency_key
            if key and check_replay and slot.state is S.ACTIVE:
                replay = await self.replay(slot, key)
                if replay is not None:
                    return replay
            if slot.state is S.ACTIVE and slot.grant is not None:
                return await self._turn(slot, message, progress)
        return None

    async def replay(self, slot: IdentitySlot, key: str) -> DispatchReceipt | None:
        """The receipt of the turn that ran with ``key`` in this session, if the store
        still keeps it. Always asked of the store: it alone knows the retention, and a
        replay answers what it kept (the output cut to the receipt limit)."""
        legacy = slot.receipts.get(key)  # from a format-1 checkpoint, until restart
        if legacy is not None:
            return legacy
        stored = await self.r.p.continuity.load_receipt(slot.identity, key)
        if stored is None:
            return None
        receipt = checkpoint.decode_receipt(slot.identity, stored.data)
        if receipt.session_id != slot.session_id:
            return None  # from before a reset: the new generation runs it afresh
        return receipt

    async def _turn(
        self, slot: IdentitySlot, message: DispatchInput, progress: ProgressSink | None = None
    ) -> DispatchReceipt:
        if slot.state is not S.ACTIVE or slot.gate is None or slot.grant is None:
            raise NotActive(slot.identity, slot.state.value)
        gate, grant = slot.gate, slot.grant
        session_id, identity = slot.session_id, slot.identity
        assert session_id is not None and slot.generation is not None
        try:
            outcome = await self._run(slot, session_id, message, progress)
        except SessionNotFound:
            # The runtime lost the session (a remote runtime restarted): the turn did
            # not run. Resume the session from its checkpoint and run it there.
            await self._rewind(slot)
            if slot.state is not S.ACTIVE:
                raise NotActive(identity, slot.state.value) from None
            outcome = await self._run(slot, session_id, message, progress)
        gate.ensure_open()
        version = (slot.checkpoint_version or 0) + 1
        receipt = DispatchReceipt(
            identity=AgentIdentity(identity),
            session_id=SessionId(session_id),
            fencing_token=grant.fencing_token,
            checkpoint_version=version,
            output=outcome.output,
            structured_output=outcome.structured_output,
            correlation_id=message.correlation_id,
            usage=outcome.usage,
        )
        key = message.idempotency_key
        stored = (
            TurnReceipt(key, checkpoint.encode_receipt(receipt, self.r.receipt_output_limit))
            if key
            else None
        )
        snapshot = checkpoint.encode(await self.r.p.runtime.export_snapshot(session_id))
        try:
            await self.r.p.continuity.save_session_snapshot(
                Checkpoint(
                    identity=AgentIdentity(identity),
                    session_id=SessionId(session_id),
                    generation=slot.generation,
                    checkpoint_version=version,
                    fencing_token=grant.fencing_token,
                    snapshot=snapshot,
                ),
                stored,
            )
        except StaleFencingToken:
            metrics.CHECKPOINT_SAVES.labels("stale").inc()
            # Someone else owns this identity now: never act on it again here.
            await self.upkeep.lose_locked(slot, "checkpoint refused: stale fencing token")
            raise NotActive(identity, "lease_lost") from None
        except BaseException as exc:
            metrics.CHECKPOINT_SAVES.labels(
                "full" if isinstance(exc, BackendFull) else "error"
            ).inc()
            # Unknown outcome (store down, reply lost, call cancelled): resync from the store.
            await self._rewind(slot)
            raise
        metrics.CHECKPOINT_SAVES.labels("ok").inc()
        self.r.store_reachable = True
        slot.apply(Checkpointed(version))
        self.r.event(
            "turn_completed",
            identity,
            {
                "session_id": session_id,
                "checkpoint_version": version,
                "correlation_id": message.correlation_id,
                "origin": message.origin.value,
            },
        )
        return receipt

    async def _run(
        self,
        slot: IdentitySlot,
        session_id: str,
        message: DispatchInput,
        progress: ProgressSink | None,
    ) -> TurnOutcome:
        identity = slot.identity
        return await self.r.p.runtime.run_turn(
            session_id,
            message,
            peers=self.r.peers_of(identity),
            peer_sender=lambda peer, text: self._peer_message(identity, peer, text),
            tool_caller=self.r.modules.caller(identity, slot.draft) if self.r.modules else None,
            progress=progress,
        )

    async def _rewind(self, slot: IdentitySlot) -> None:
        """A turn ran but its checkpoint was not confirmed. The write may still have
        landed (a reply lost when an etcd member died), so re-read the record from the
        store and resume from whatever it holds: the session never runs ahead of the
        store, and a retry with the same idempotency key finds its receipt if the
        write did land."""
        session_id = slot.session_id
        if session_id is None or slot.agent_runtime_id is None:
            return
        await self.r.p.runtime.close_session(session_id)
        try:
            state = resolve_states(await self.r.p.continuity.resolve_many([slot.identity]))[
                slot.identity
            ]
            if not isinstance(state, Ready) or state.record.session_id != session_id:
                raise InvalidArgument(
                    "continuity", f"unexpected state after a failed save: {state}"
                )
            record, receipts = await self.activation.restore(
                slot.spec, state.record, slot.draft or AgentBuildDraft()
            )
            slot.apply(Rewound(record, receipts))
        except Exception:
            log.exception("%s: could not reload the last checkpoint", slot.identity)
            await self.upkeep.lose_locked(
                slot, "session could not be restored after a failed checkpoint", release=True
            )

    async def _peer_message(self, sender: str, peer: str, text: str) -> str:
        if sender == peer or ManagedPeerEdge.new(sender, peer) not in self.r.edges:
            raise TopologyViolation(sender, peer)
        message = DispatchInput(text, origin=DispatchOrigin.FLOW, correlation_id=f"peer:{sender}")
        receipt = await asyncio.wait_for(self.dispatch(peer, message), PEER_CALL_TIMEOUT)
        return receipt.output
