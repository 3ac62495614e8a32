"""The flow engine over in-memory ports (fast domain checks; the served fleet's tests
use real processes): runs complete, claim after a lost owner without running a turn
twice, cancel, time out, and refuse what they should."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from test_flow_document import AGENTS, ASK_TEAM

from mobkit.core.errors import InvalidArgument
from mobkit.core.identity import AgentIdentity, SessionId
from mobkit.core.types import DispatchInput, DispatchOrigin, DispatchReceipt
from mobkit.flows.engine import FlowEngine, RunFilter
from mobkit.flows.errors import FlowNotFound, RunNotFound, SpecRevisionConflict
from mobkit.flows.memory_store import MemoryRunStore
from mobkit.flows.records import RunRecord
from mobkit.flows.run import RunState
from mobkit.lease.memory import MemoryLeaseProvider
from mobkit.roster.document import parse_roster_toml
from mobkit.roster.domain import RosterSnapshot
from mobkit.testing.suite import until

DOC = parse_roster_toml(AGENTS + ASK_TEAM.replace("timeout_seconds = 60", "timeout_seconds = 0.3"))
TTL = timedelta(seconds=1)


class Roster:
    def __init__(self) -> None:
        self.snapshot = RosterSnapshot(DOC.specs, 5, DOC.profiles, flows=DOC.flows)

    async def get_roster(self, context: Any) -> RosterSnapshot:
        return self.snapshot


@dataclass
class Agents:
    """Stands in for Orchestrator.dispatch: replays a receipt per idempotency key, as
    the orchestrator does, and counts the turns that really ran."""

    turns: Counter[tuple[str, str]] = field(default_factory=Counter)
    receipts: dict[str, DispatchReceipt] = field(default_factory=dict)
    gate: asyncio.Event | None = None
    slow: float = 0.0

    async def dispatch(
        self, identity: str, message: DispatchInput, timeout: float
    ) -> DispatchReceipt:
        assert message.origin is DispatchOrigin.FLOW and message.idempotency_key
        key = message.idempotency_key
        if key in self.receipts:
            return self.receipts[key]
        if self.gate is not None:
            await self.gate.wait()
        if self.slow:
            await asyncio.sleep(self.slow)
        self.turns[(identity, key.rsplit(":", 3)[1])] += 1
        output = f"{identity}:{message.content}"
        receipt = DispatchReceipt(AgentIdentity(identity), SessionId("s"), 1, 1, output)
        self.receipts[key] = receipt
        return receipt


def engine(
    store: MemoryRunStore, leases: MemoryLeaseProvider, agents: Agents, name: str = "a"
) -> FlowEngine:
    events: list[tuple[str, str | None, dict[str, Any]]] = []
    e = FlowEngine(
        store=store,
        leases=leases,
        roster=Roster(),
        dispatch=agents.dispatch,
        emit=lambda kind, identity, data: events.append((kind, identity, data)),
        instance=f"orch-{name}~1@127.0.0.1:1",
        lease_ttl=TTL,
    )
    e.events = events  # type: ignore[attr-defined]
    return e


async def _true(value: bool) -> bool:
    return value


async def finished(e: FlowEngine, run_id: str, timeout: float = 10) -> RunRecord:
    async with asyncio.timeout(timeout):
        while True:
            record = await e.get_run(run_id)
            if record.run.state.terminal:
                return record
            await asyncio.sleep(0.05)


async def test_a_run_completes_passing_outputs_between_steps() -> None:
    agents = Agents()
    e = engine(MemoryRunStore(), MemoryLeaseProvider(), agents)
    await e.start()
    try:
        started = await e.start_run(
            "ask-team", {"question": "why"}, request_id="r1", labels={"k": "v"}
        )
        record = await finished(e, started.run_id)
    finally:
        await e.stop()
    assert record.run.state is RunState.SUCCEEDED
    framed = "coordinator:Frame the question: why"
    answers = record.run.steps["answer"].results
    assert {k: r.output for k, r in answers.items()} == {
        "worker-1": f"worker-1:{framed}",
        "worker-2": f"worker-2:{framed}",
    }
    summary = record.run.steps["summarise"].results["coordinator"].output
    assert summary == (
        f'coordinator:Summarise ["worker-1:{framed}", "worker-2:{framed}"] for {framed}'
    )
    assert set(agents.turns.values()) == {1}
    kinds = [k for k, _, _ in e.events]  # type: ignore[attr-defined]
    assert kinds[0] == "run_started" and kinds[-1] == "run_succeeded"
    assert kinds.count("step_turn_done") == 4


async def test_start_run_is_idempotent_and_refuses_what_it_should() -> None:
    e = engine(MemoryRunStore(), MemoryLeaseProvider(), Agents())
    first = await e.start_run("ask-team", {"question": "q"}, request_id="same")
    again = await e.start_run("ask-team", {"question": "q"}, request_id="same")
    assert again.run_id == first.run_id
    with pytest.raises(InvalidArgument, match="request_id"):
        await e.start_run("ask-team", {"question": "other"}, request_id="same")
    with pytest.raises(FlowNotFound):
        await e.start_run("no-such-flow", {})
    with pytest.raises(InvalidArgument, match="'question' is a required property"):
        await e.start_run("ask-team", {"nothing": 1})
    with pytest.raises(SpecRevisionConflict):
        await e.start_run("ask-team", {"question": "q"}, expected_roster_revision=4)
    with pytest.raises(RunNotFound):
        await e.get_run("nope")
    runs, after = await e.list_runs(RunFilter(flow_id="ask-team"), 10)
    assert [r.run_id for r in runs] == [first.run_id] and after == ""


async def test_a_run_taken_over_after_its_owner_stops_runs_no_turn_twice() -> None:
    store, leases, agents = MemoryRunStore(), MemoryLeaseProvider(), Agents()
    a, b = engine(store, leases, agents, "a"), engine(store, leases, agents, "b")
    agents.gate = asyncio.Event()
    await a.start()
    started = await a.start_run("ask-team", {"question": "q"})
    await until(lambda: _true(started.run_id in a.driving), "run claimed by a", 5)
    agents.gate.set()
    # The fan-out half done: one worker answered.
    await until(
        lambda: _true(any(i.startswith("worker") for i, _ in agents.turns)), "a worker turn", 5
    )
    await a.stop(release=False)  # dies holding the lease
    await b.start()
    try:
        record = await finished(b, started.run_id)
    finally:
        await b.stop()
    assert record.run.state is RunState.SUCCEEDED
    assert all(n == 1 for n in agents.turns.values()), agents.turns


async def test_cancel_ends_a_running_run() -> None:
    agents = Agents(gate=asyncio.Event())
    e = engine(MemoryRunStore(), MemoryLeaseProvider(), agents)
    await e.start()
    try:
        started = await e.start_run("ask-team", {"question": "q"})
        await e.cancel_run(started.run_id)
        record = await finished(e, started.run_id)
    finally:
        await e.stop()
    assert record.run.state is RunState.CANCELED
    assert record.run.failure is not None and record.run.failure.reason == "RUN_CANCELED"


async def test_a_turn_slower_than_its_timeout_fails_the_step() -> None:
    agents = Agents()
    e = engine(MemoryRunStore(), MemoryLeaseProvider(), agents)
    await e.start()
    try:
        started = await e.start_run("ask-team", {"question": "q"})
        agents.slow = 1.0  # the fan-out step allows 0.3 s per turn, 3 attempts
        record = await finished(e, started.run_id, timeout=30)
    finally:
        await e.stop()
    assert record.run.state is RunState.FAILED
    assert record.run.failure is not None
    assert record.run.failure.reason == "FLOW_TURN_TIMED_OUT"
    assert record.run.failure.step_id == "answer"


def _chain(n: int) -> str:
    """Flows f0 -> f1 -> ... -> f<n-1>, each running the next as a nested step."""
    out = []
    for i in range(n):
        out.append(f'[[flows]]\nflow_id = "f{i}"\n[[flows.steps]]\nstep_id = "s"\n')
        out.append(f'flow = "f{i + 1}"\n' if i + 1 < n else 'identity = "coordinator"\n')
    return "".join(out)


@pytest.mark.parametrize(("depth", "state"), [(3, RunState.SUCCEEDED), (10, RunState.FAILED)])
async def test_nested_runs_finish_their_parents_within_the_depth_limit(
    depth: int, state: RunState
) -> None:
    doc = parse_roster_toml(AGENTS + _chain(depth))
    agents = Agents()
    e = engine(MemoryRunStore(), MemoryLeaseProvider(), agents)
    e.roster._roster.snapshot = RosterSnapshot(doc.specs, 1, doc.profiles, flows=doc.flows)  # type: ignore[attr-defined]
    await e.start()
    try:
        started = await e.start_run("f0", "hello")
        record = await finished(e, started.run_id, timeout=30)
    finally:
        await e.stop()
    assert record.run.state is state
    if state is RunState.SUCCEEDED:
        assert agents.turns == {("coordinator", "s"): 1}
    else:
        assert record.run.failure is not None
        assert record.run.failure.reason == "FRAME_DEPTH_LIMIT_EXCEEDED"
        assert agents.turns == {}
