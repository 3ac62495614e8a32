"""What a flow is: its steps, their targets and dependencies. No I/O, no gRPC.

A flow is a DAG of steps declared in the roster document (``[[flows]]``, parsed by
:mod:`mobkit.flows.document`). A step runs one turn on each of its targets, or runs
another flow; it starts once every step it depends on has succeeded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from mobkit.core.identity import AgentIdentity
from mobkit.core.types import JsonValue

DEFAULT_STEP_TIMEOUT_SECONDS = 300.0
MAX_FRAME_DEPTH = 8
"""How deeply flows may nest (a step running a flow opens a frame). Cycles between
flows are refused when the roster is read; this bounds long finite chains."""


@dataclass(frozen=True, slots=True)
class IdentityTarget:
    """One named identity."""

    identity: AgentIdentity


@dataclass(frozen=True, slots=True)
class SelectorTarget:
    """The first identity of the roster (in roster order) whose labels match."""

    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class FanOutTarget:
    """Every identity whose labels match, each its own turn; fewer than ``min_targets``
    matches fail the step with INSUFFICIENT_TARGETS before any turn runs."""

    labels: Mapping[str, str]
    min_targets: int = 1


@dataclass(frozen=True, slots=True)
class SubflowTarget:
    """Another flow, run as a nested frame with the rendered input as its input."""

    flow_id: str


Target = IdentityTarget | SelectorTarget | FanOutTarget | SubflowTarget


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts of a step's turn on one target; the backoff doubles up to its cap."""

    max_attempts: int = 1
    initial_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0
    on: frozenset[str] | None = None
    """The failure reasons retried (``NOT_ACTIVE``, ...); None: every failure."""

    def retries(self, reason: str) -> bool:
        return self.on is None or reason in self.on

    def backoff(self, attempt: int) -> float:
        """The wait before attempt ``attempt`` (2 is the first retry)."""
        return min(self.max_backoff_seconds, self.initial_backoff_seconds * 2 ** (attempt - 2))


@dataclass(frozen=True, slots=True)
class FlowStep:
    step_id: str
    target: Target
    depends_on: tuple[str, ...] = ()
    input_template: str | None = None
    """A template over ``input`` and ``steps`` (:mod:`mobkit.flows.templates`); None: the
    run's input for a first step, else the outputs of the steps it depends on."""
    output_schema: JsonValue | None = None
    """A JSON Schema (2020-12) each target's output must satisfy (SCHEMA_VALIDATION)."""
    timeout_seconds: float = DEFAULT_STEP_TIMEOUT_SECONDS
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True, slots=True)
class FlowDefinition:
    flow_id: str
    steps: tuple[FlowStep, ...]
    description: str | None = None
    input_schema: JsonValue | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def step(self, step_id: str) -> FlowStep:
        return next(s for s in self.steps if s.step_id == step_id)

    def ready(self, succeeded: set[str] | frozenset[str], started: set[str]) -> Iterator[FlowStep]:
        """Steps not yet started whose dependencies have all succeeded, in source order."""
        for step in self.steps:
            if step.step_id not in started and all(d in succeeded for d in step.depends_on):
                yield step

    def subflows(self) -> Iterator[str]:
        for step in self.steps:
            if isinstance(step.target, SubflowTarget):
                yield step.target.flow_id


def ancestors(steps: Mapping[str, tuple[str, ...]], step_id: str) -> set[str]:
    """Every step ``step_id`` depends on, directly or not (``steps``: id -> depends_on)."""
    seen: set[str] = set()
    todo = list(steps.get(step_id, ()))
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(steps.get(current, ()))
    return seen


def find_cycle(graph: Mapping[str, tuple[str, ...]]) -> list[str] | None:
    """A cycle of ``graph`` (node -> successors) as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (found := visit(node)) is not None:
            return found
    return None
