"""A stored run: its state, the flow definitions it is pinned to, and its metadata."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from mobkit.flows.definition import FlowDefinition
from mobkit.flows.run import Run, RunState


@dataclass(frozen=True, slots=True)
class Parent:
    run_id: str
    step_id: str


@dataclass(frozen=True, slots=True)
class RunRecord:
    run: Run
    flows: tuple[FlowDefinition, ...]
    """The run's flow first, then every flow it runs as a nested step, as they were when
    the run started: a roster edit during a run does not change it."""
    created_ms: int
    updated_ms: int
    request_id: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    parent: Parent | None = None
    events_from: int = 0
    """The event log's latest cursor just before the run started: a watch from 0 starts
    there instead of replaying the whole log."""

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def flow(self) -> FlowDefinition:
        return self.flows[0]

    def definition(self, flow_id: str) -> FlowDefinition:
        return next(f for f in self.flows if f.flow_id == flow_id)

    def view(self) -> RunView:
        return RunView(
            self.run,
            self.created_ms,
            self.updated_ms,
            self.request_id,
            self.labels,
            self.parent,
            tuple(s.step_id for s in self.flow.steps),
        )


@dataclass(frozen=True, slots=True)
class RunView:
    """A run as the API shows it (GetRun, ListRuns): its state and metadata, without
    the pinned definitions."""

    run: Run
    created_ms: int
    updated_ms: int
    request_id: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    parent: Parent | None = None
    step_order: tuple[str, ...] = ()
    """The flow's step ids in order: how ``run.steps`` is listed."""

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def state(self) -> RunState:
        return self.run.state


def closure(flow_id: str, flows: tuple[FlowDefinition, ...]) -> tuple[FlowDefinition, ...]:
    """``flow_id``'s definition and, after it, every flow it runs, directly or not."""
    by_id = {f.flow_id: f for f in flows}
    order = [flow_id]
    for current in order:
        order.extend(s for s in by_id[current].subflows() if s not in order)
    return tuple(by_id[f] for f in order)


def new_run_id(now_ms: int | None = None) -> str:
    """Sortable by creation time (13 hex digits of milliseconds), then random."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{ms:013x}-{os.urandom(6).hex()}"


def now_ms() -> int:
    return int(time.time() * 1000)
