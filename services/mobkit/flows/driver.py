"""Drives one run while this replica holds its lease: turns out, outcomes in, and a
fenced checkpoint after every change (the rules are :mod:`mobkit.flows.run`'s).

A save that meets another owner's token (STALE_FENCING_TOKEN) ends the drive at once:
this replica lost the run, and whatever it still had in flight is not recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any

from mobkit.core.errors import MobKitError, StaleFencingToken
from mobkit.core.types import DispatchInput, DispatchOrigin, DurableAgentSpec
from mobkit.flows.definition import MAX_FRAME_DEPTH, FlowDefinition
from mobkit.flows.errors import FlowTurnTimedOut, FrameDepthLimitExceeded
from mobkit.flows.ports import Dispatch, Emit
from mobkit.flows.records import Parent, RunRecord, closure, now_ms
from mobkit.flows.run import (
    Effect,
    Failure,
    Run,
    RunState,
    StartChildRun,
    StartTurn,
    StepState,
    TurnDone,
    TurnError,
    TurnProof,
    advance,
    cancel,
    record_child,
    record_turn,
)
from mobkit.flows.store import RunStore

log = logging.getLogger("mobkit.flows")
POLL_SECONDS = 0.25
"""How often a drive looks for a cancel request and a nested run's end."""

Specs = Callable[[], Awaitable[Sequence[DurableAgentSpec]]]
Outcome = TurnDone | TurnError | RunRecord


class RunLost(Exception):
    """Another owner's token wrote the run: this replica stops driving it."""


class RunDriver:
    def __init__(
        self,
        record: RunRecord,
        fencing_token: int,
        *,
        store: RunStore,
        dispatch: Dispatch,
        emit: Emit,
        specs: Specs,
        kick: Callable[[], None] = lambda: None,
    ) -> None:
        self.record = record
        self.token = fencing_token
        self._store = store
        self._dispatch = dispatch
        self._emit = emit
        self._specs = specs
        self._kick = kick
        self._inflight: dict[str, asyncio.Task[tuple[Effect, Outcome]]] = {}
        self._not_before: dict[tuple[str, str], float] = {}

    @property
    def run_id(self) -> str:
        return self.record.run_id

    async def drive(self) -> RunRecord:
        """Until the run is finished (or lost: :class:`RunLost`)."""
        try:
            while True:
                if await self._store.cancel_requested(self.run_id):
                    await self._save(cancel(self.record.run))
                    return self.record
                run, effects = advance(self.record.run, self._flow(), await self._specs())
                await self._save(run)
                if run.state.terminal:
                    return self.record
                self._start(effects)
                await self._collect()
        finally:
            for task in self._inflight.values():
                task.cancel()

    def _flow(self) -> FlowDefinition:
        return self.record.definition(self.record.run.flow_id)

    def _start(self, effects: list[Effect]) -> None:
        now = time.monotonic()
        for effect in effects:
            key = _key(effect)
            if key in self._inflight:
                continue
            if isinstance(effect, StartTurn):
                if self._not_before.get((effect.step_id, effect.identity), 0.0) > now:
                    continue
                self._emit_step(
                    "step_turn_started", effect.step_id, effect.identity, attempt=effect.attempt
                )
                coro: Coroutine[Any, Any, tuple[Effect, Outcome]] = self._turn(effect)
            else:
                coro = self._child(effect)
            self._inflight[key] = asyncio.create_task(coro, name=f"flow-{key}")

    async def _collect(self) -> None:
        """Wait for the next outcome (or a poll), and fold in what finished."""
        waits = [t - time.monotonic() for t in self._not_before.values()]
        timeout = max(0.0, min([POLL_SECONDS, *waits]))
        if not self._inflight:
            await asyncio.sleep(timeout)
            return
        done, _ = await asyncio.wait(
            self._inflight.values(), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        # Every outcome that is in, folded into one checkpoint: a fan-out's replies
        # that arrive together cost one write, not one each (a reply lost to a crash
        # before the write is answered again by its receipt).
        run = self.record.run
        for task in done:
            effect, outcome = task.result()
            del self._inflight[_key(effect)]
            if isinstance(effect, StartChildRun):
                assert isinstance(outcome, RunRecord)
                run = record_child(run, effect.step_id, outcome.run)
                continue
            assert not isinstance(outcome, RunRecord)
            run, backoff = record_turn(run, self._flow(), effect.step_id, effect.identity, outcome)
            slot = (effect.step_id, effect.identity)
            if backoff is not None:
                self._not_before[slot] = time.monotonic() + backoff
            else:
                self._not_before.pop(slot, None)
            self._emit_turn(effect, outcome)
        await self._save(run)

    async def _turn(self, effect: StartTurn) -> tuple[Effect, Outcome]:
        run = self.record.run
        message = DispatchInput(
            effect.message,
            origin=DispatchOrigin(run.origin),
            correlation_id=run.correlation_id or self.run_id,
            idempotency_key=effect.idempotency_key,
        )
        try:
            async with asyncio.timeout(effect.timeout_seconds):
                receipt = await self._dispatch(effect.identity, message, effect.timeout_seconds)
        except TimeoutError:
            error = FlowTurnTimedOut(effect.step_id, effect.identity, effect.timeout_seconds)
            return effect, TurnError(error)
        except MobKitError as exc:
            return effect, TurnError(exc)
        proof = TurnProof(
            receipt.session_id,
            receipt.fencing_token,
            receipt.checkpoint_version,
            receipt.output_truncated,
        )
        return effect, TurnDone(receipt.output, receipt.structured_output, proof)

    async def _child(self, effect: StartChildRun) -> tuple[Effect, Outcome]:
        """Create the nested run (again, after a failover: the same id), then wait for it."""
        parent = self.record
        depth = parent.run.depth + 1
        if depth > MAX_FRAME_DEPTH:
            error = FrameDepthLimitExceeded(effect.step_id, MAX_FRAME_DEPTH, parent.run.depth)
            failed = Run(effect.run_id, effect.flow_id, parent.run.roster_revision, effect.input)
            failure = Failure.of(error, effect.step_id)
            return effect, replace(
                parent, run=replace(failed, state=RunState.FAILED, failure=failure)
            )
        now = now_ms()
        child = RunRecord(
            Run(
                effect.run_id, effect.flow_id, parent.run.roster_revision, effect.input, depth=depth
            ),
            closure(effect.flow_id, parent.flows),
            now,
            now,
            labels=parent.labels,
            parent=Parent(parent.run_id, effect.step_id),
        )
        child, created = await self._store.create(child)
        if created:
            emit_run(self._emit, "run_started", child)
            self._kick()
        while not child.run.state.terminal:
            await asyncio.sleep(POLL_SECONDS)
            current = await self._store.get(child.run_id)
            if current is not None:
                child = current
        return effect, child

    async def _save(self, run: Run) -> None:
        before = self.record.run
        if run == before:
            return
        record = replace(self.record, run=run, updated_ms=now_ms())
        try:
            await self._store.save(record, self.token)
        except StaleFencingToken as exc:
            raise RunLost(str(exc)) from exc
        self.record = record
        self._emit_changes(before, run)

    # -- events ---------------------------------------------------------------------------

    def _emit_changes(self, before: Run, after: Run) -> None:
        for step_id, step in after.steps.items():
            old = before.steps.get(step_id)
            if old is not None and old.state is step.state:
                continue
            if step.state is StepState.RUNNING:
                self._emit_step("step_started", step_id, None, targets=list(step.targets))
            elif step.state is not StepState.PENDING:
                failure = step.failure
                self._emit_step(
                    f"step_{step.state.value}",
                    step_id,
                    None,
                    **({"reason": failure.reason, "message": failure.message} if failure else {}),
                )
        if after.state.terminal and not before.state.terminal:
            emit_run(self._emit, f"run_{after.state.value}", self.record)

    def _emit_turn(self, effect: StartTurn, outcome: Outcome) -> None:
        if isinstance(outcome, TurnError):
            self._emit_step(
                "step_turn_failed",
                effect.step_id,
                effect.identity,
                attempt=effect.attempt,
                reason=outcome.error.reason,
                message=outcome.error.message,
            )
        else:
            self._emit_step(
                "step_turn_done", effect.step_id, effect.identity, attempt=effect.attempt
            )

    def _emit_step(self, kind: str, step_id: str, identity: str | None, **data: Any) -> None:
        run = self.record.run
        self._emit(
            kind,
            identity,
            {"run_id": run.run_id, "flow_id": run.flow_id, "step_id": step_id, **data},
        )


def _key(effect: Effect) -> str:
    return effect.idempotency_key if isinstance(effect, StartTurn) else f"child:{effect.run_id}"


def emit_run(emit: Emit, kind: str, record: RunRecord) -> None:
    """A run-level event: ``run_started``, ``run_succeeded``, ``run_failed``, ``run_canceled``."""
    run = record.run
    data: dict[str, Any] = {"run_id": run.run_id, "flow_id": run.flow_id, "state": run.state.value}
    if run.failure is not None:
        data.update(reason=run.failure.reason, message=run.failure.message)
    if record.parent is not None:
        data["parent_run_id"] = record.parent.run_id
    emit(kind, None, data)
