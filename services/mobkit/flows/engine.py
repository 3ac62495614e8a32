"""The flow engine of one replica: starts runs, claims vacant ones, keeps their leases,
and drives each with a :class:`~mobkit.flows.driver.RunDriver`.

Runs spread over the replicas as identities do: every run has a lease in the lease
provider (``flow-run:<run>``) whose fencing token guards its record. A replica claims
the vacant runs that rendezvous hashing ranks it first for among the live replicas at
once, and any other vacant run once it has been vacant ``rank`` claim intervals, so a
run whose preferred replica died is taken within a few intervals of its lease expiring.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from mobkit.core.errors import InvalidArgument, MobKitError
from mobkit.core.keyspace import run_lease_identity
from mobkit.core.types import Acquired, DurableAgentSpec, LeaseGrant, Lost, RosterContext
from mobkit.flows.definition import FlowDefinition
from mobkit.flows.driver import RunDriver, RunLost, emit_run
from mobkit.flows.errors import FlowNotFound, RunNotFound, SpecRevisionConflict
from mobkit.flows.ports import Dispatch, Emit, Members
from mobkit.flows.records import RunRecord, closure, new_run_id, now_ms
from mobkit.flows.run import Run, RunState
from mobkit.flows.store import RunStore
from mobkit.lease.domain import LeaseProvider
from mobkit.orchestrator.fleet import rendezvous_score
from mobkit.roster.domain import RosterSnapshot

log = logging.getLogger("mobkit.flows")
CLAIM_INTERVAL_SECONDS = 0.5
SPECS_CACHE_SECONDS = 1.0
DEFAULT_MAX_RUNS = 256
"""Runs one replica drives at once; more wait, active, for a replica with room."""


class RosterReader:
    """The roster's current snapshot, read through the roster port (cached briefly:
    steps resolve their targets from it)."""

    def __init__(self, roster: Any) -> None:
        self._roster = roster
        self._cached: tuple[float, RosterSnapshot] | None = None

    async def snapshot(self, fresh: bool = False) -> RosterSnapshot:
        now = time.monotonic()
        if fresh or self._cached is None or now - self._cached[0] > SPECS_CACHE_SECONDS:
            snapshot: RosterSnapshot = await self._roster.get_roster(RosterContext())
            self._cached = (now, snapshot)
        return self._cached[1]

    async def specs(self) -> Sequence[DurableAgentSpec]:
        return (await self.snapshot()).specs


@dataclass(frozen=True, slots=True)
class RunFilter:
    flow_id: str | None = None
    states: frozenset[RunState] = frozenset()
    labels: Mapping[str, str] = field(default_factory=dict)

    def matches(self, record: RunRecord) -> bool:
        if self.flow_id is not None and record.run.flow_id != self.flow_id:
            return False
        if self.states and record.run.state not in self.states:
            return False
        return all(record.labels.get(k) == v for k, v in self.labels.items())


class FlowEngine:
    def __init__(
        self,
        *,
        store: RunStore,
        leases: LeaseProvider,
        roster: Any,
        dispatch: Dispatch,
        emit: Emit,
        instance: str,
        lease_ttl: timedelta,
        members: Members | None = None,
        latest_cursor: Callable[[], Awaitable[int]] | None = None,
        max_runs: int = DEFAULT_MAX_RUNS,
        claim_interval: float = CLAIM_INTERVAL_SECONDS,
    ) -> None:
        self.store = store
        self._leases = leases
        self.roster = RosterReader(roster)
        self._dispatch = dispatch
        self._emit = emit
        self.instance = instance
        self.lease_ttl = lease_ttl
        self._members = members
        self._latest_cursor = latest_cursor
        self.max_runs = max_runs
        self.claim_interval = claim_interval
        self._driving: dict[str, tuple[LeaseGrant, asyncio.Task[None]]] = {}
        self._vacant_since: dict[str, float] = {}
        self._kick = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []

    # -- the API (FlowService) -------------------------------------------------------------

    async def list_flows(self) -> tuple[FlowDefinition, ...]:
        return (await self.roster.snapshot(fresh=True)).flows

    async def start_run(
        self,
        flow_id: str,
        input: Any,
        *,
        request_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        expected_roster_revision: int | None = None,
    ) -> RunRecord:
        snapshot = await self.roster.snapshot(fresh=True)
        flow = snapshot.flow(flow_id)
        if flow is None:
            raise FlowNotFound(flow_id)
        if expected_roster_revision is not None and expected_roster_revision != snapshot.revision:
            raise SpecRevisionConflict(flow_id, expected_roster_revision, snapshot.revision)
        if flow.input_schema is not None:
            error = best_match(Draft202012Validator(flow.input_schema).iter_errors(input))
            if error is not None:
                raise InvalidArgument(
                    "input", f"does not satisfy flow {flow_id!r}'s input_schema: {error.message}"
                )
        now = now_ms()
        record = RunRecord(
            Run(new_run_id(now), flow_id, snapshot.revision, input),
            closure(flow_id, snapshot.flows),
            now,
            now,
            request_id=request_id,
            labels=dict(labels or {}),
        )
        stored = await self.submit(record)
        if stored is not record and (stored.run.flow_id != flow_id or stored.run.input != input):
            raise InvalidArgument(
                "request_id",
                f"already used by run {stored.run_id} of flow {stored.run.flow_id!r} with another input",
            )
        return stored

    async def submit(self, record: RunRecord, *, drive_here: bool = False) -> RunRecord:
        """Store a new run and have a replica claim it (``drive_here``: this one, at once,
        while it has room); a run already stored under its request id or run id is
        returned instead (and is not started again)."""
        if self._latest_cursor is not None:
            record = replace(record, events_from=await self._latest_cursor())
        stored, created = await self.store.create(record)
        if created:
            emit_run(self._emit, "run_started", stored)
            if drive_here and len(self._driving) < self.max_runs:
                await self._take([stored.run_id], {stored.run_id: stored})
            else:
                self.kick()
        return stored

    async def get_run(self, run_id: str) -> RunRecord:
        record = await self.store.get(run_id)
        if record is None:
            raise RunNotFound(run_id)
        return record

    async def list_runs(
        self, run_filter: RunFilter, page_size: int, after: str = ""
    ) -> tuple[list[RunRecord], str]:
        """Matching runs in creation order, and the id to continue after ("" at the end).
        Each call examines a bounded number of runs, so a sparse filter pages on."""
        found: list[RunRecord] = []
        for _ in range(8):
            page = await self.store.page(after, max(page_size, 100))
            for record in page:
                after = record.run_id
                if run_filter.matches(record):
                    found.append(record)
                    if len(found) == page_size:
                        return found, after
            if len(page) < max(page_size, 100):
                return found, ""
        return found, after

    async def cancel_run(self, run_id: str) -> RunRecord:
        record = await self.get_run(run_id)
        if not record.run.state.terminal:
            await self.store.request_cancel(run_id)
        return record

    # -- claiming and driving ------------------------------------------------------------

    def kick(self) -> None:
        self._kick.set()

    @property
    def driving(self) -> list[str]:
        return sorted(self._driving)

    async def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="flow-claim"),
            asyncio.create_task(self._renew_loop(), name="flow-renew"),
        ]

    async def stop(self, *, release: bool = True) -> None:
        for task in self._loops:
            task.cancel()
        for _, task in self._driving.values():
            task.cancel()
        for task in [*self._loops, *(t for _, t in self._driving.values())]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        grants = [g for g, _ in self._driving.values()]
        self._driving.clear()
        if release and grants:
            with contextlib.suppress(MobKitError):
                await self._leases.release_leases(grants, self.instance)

    async def _claim_loop(self) -> None:
        while True:
            try:
                await self.claim_once()
            except MobKitError as exc:
                log.warning("flow run claim round failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.claim_interval):
                    await self._kick.wait()
            self._kick.clear()

    async def claim_once(self) -> list[str]:
        """Claim the vacant runs due to this replica now; the run ids claimed."""
        room = self.max_runs - len(self._driving)
        if room <= 0:
            return []
        active = [r for r in await self.store.active() if r not in self._driving]
        if not active:
            self._vacant_since.clear()
            return []
        held = await self._leases.holders()
        vacant = [r for r in active if run_lease_identity(r) not in held]
        members = await self._members() if self._members is not None else [self.instance]
        now = time.monotonic()
        due = []
        for run_id in vacant:
            since = self._vacant_since.setdefault(run_id, now)
            # Time, not rounds: a replica woken often (every StartRun kicks it) must not
            # reach the runs ranked for others sooner.
            if now - since >= _rank(run_id, self.instance, members) * self.claim_interval:
                due.append(run_id)
        for gone in set(self._vacant_since) - set(vacant):
            del self._vacant_since[gone]
        return await self._take(due[:room])

    async def _take(
        self, run_ids: list[str], known: Mapping[str, RunRecord] | None = None
    ) -> list[str]:
        if not run_ids:
            return []
        identities = [run_lease_identity(r) for r in run_ids]
        results = await self._leases.acquire_leases(identities, self.instance, self.lease_ttl)
        taken = []
        for run_id, result in zip(run_ids, results, strict=True):
            if not isinstance(result, Acquired):
                continue
            record = (known or {}).get(run_id) or await self.store.get(run_id)
            if record is None or record.run.state.terminal:
                await self._leases.release_leases([result.grant], self.instance)
                continue
            self._vacant_since.pop(run_id, None)
            task = asyncio.create_task(self._drive(record, result.grant), name=f"flow-run-{run_id}")
            self._driving[run_id] = (result.grant, task)
            taken.append(run_id)
        return taken

    async def _drive(self, record: RunRecord, grant: LeaseGrant) -> None:
        driver = RunDriver(
            record,
            grant.fencing_token,
            store=self.store,
            dispatch=self._dispatch,
            emit=self._emit,
            specs=self.roster.specs,
            kick=self.kick,
        )
        try:
            await driver.drive()
        except RunLost as exc:
            log.warning("flow run %s: lost to another owner (%s)", record.run_id, exc)
        except MobKitError as exc:
            # A store that cannot be reached: let the lease go so that any replica
            # (this one included) takes the run up again from its last checkpoint.
            log.warning("flow run %s: stopped driving: %s", record.run_id, exc)
        finally:
            self._driving.pop(record.run_id, None)
            with contextlib.suppress(MobKitError):
                await self._leases.release_leases([grant], self.instance)
            self.kick()

    async def _renew_loop(self) -> None:
        interval = max(0.05, self.lease_ttl.total_seconds() / 3)
        while True:
            await asyncio.sleep(interval)
            driving = list(self._driving.items())
            if not driving:
                continue
            grants = [grant for _, (grant, _) in driving]
            try:
                results = await self._leases.renew_leases(grants, self.instance)
            except MobKitError as exc:
                log.warning("flow run lease renewal failed: %s", exc)
                continue
            for (run_id, (_, task)), result in zip(driving, results, strict=True):
                if isinstance(result, Lost):
                    log.warning("flow run %s: lease lost; stopping its drive", run_id)
                    task.cancel()  # fenced anyway: stop sending its turns


def _rank(run_id: str, instance: str, members: list[str]) -> int:
    """This replica's place in the run's rendezvous order of ``members`` (0: first)."""
    if instance not in members:
        members = [*members, instance]
    order = sorted(members, key=lambda member: rendezvous_score(run_id, member))
    return order.index(instance)
