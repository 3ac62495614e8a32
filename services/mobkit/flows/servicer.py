"""FlowService: proto <-> domain and error translation only."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from mobkit.core.bounds import MAX_NAME_BYTES
from mobkit.core.errors import InvalidArgument, StaleEventCursor
from mobkit.core.types import MobStructuralEventEnvelope
from mobkit.events.domain import EventLog
from mobkit.flows import errors as fe
from mobkit.flows.engine import FlowEngine
from mobkit.gen.flows.v1 import flows_service_pb2 as svc
from mobkit.gen.flows.v1 import flows_service_pb2_grpc as svc_grpc
from mobkit.server.errors import ErrorTable, service_errors
from mobkit.wire.flows import (
    flow_to_proto,
    run_filter,
    run_to_proto,
    runs_page_after,
    runs_page_token,
    start_input,
)
from mobkit.wire.orchestrator import event_to_proto

SERVICE_NAME = "mobkit.flows.v1.FlowService"
DEFAULT_PAGE, MAX_PAGE = 100, 1000
STATE_POLL_SECONDS = 2.0
"""How often a watch re-reads its run, so that it ends even if the run's last event
never reached the log (an owner that died between its checkpoint and the event)."""
TERMINAL_KINDS = frozenset({"run_succeeded", "run_failed", "run_canceled"})
ERRORS: ErrorTable = service_errors(
    fe.FlowNotFound,
    fe.RunNotFound,
    fe.FlowFailed,
    fe.RunCanceled,
    fe.FlowTurnTimedOut,
    fe.SchemaValidation,
    fe.InsufficientTargets,
    fe.FrameDepthLimitExceeded,
    fe.SpecRevisionConflict,
    StaleEventCursor,
)


def _run_id(value: str) -> str:
    if not value:
        raise InvalidArgument("run_id", "is required")
    if len(value.encode()) > MAX_NAME_BYTES:
        raise InvalidArgument("run_id", f"longer than {MAX_NAME_BYTES} bytes")
    return value


class FlowServicer(svc_grpc.FlowServiceServicer):
    def __init__(self, engine: FlowEngine, events: EventLog) -> None:
        self.engine = engine
        self.events = events

    async def ListFlows(self, request: svc.ListFlowsRequest, context: Any) -> svc.ListFlowsResponse:
        snapshot = await self.engine.roster.snapshot(fresh=True)
        return svc.ListFlowsResponse(
            flows=[flow_to_proto(f) for f in snapshot.flows],
            roster_revision=snapshot.revision,
        )

    async def StartRun(self, request: svc.StartRunRequest, context: Any) -> svc.StartRunResponse:
        if not request.flow_id:
            raise InvalidArgument("flow_id", "is required")
        if len(request.request_id.encode()) > MAX_NAME_BYTES:
            raise InvalidArgument("request_id", f"longer than {MAX_NAME_BYTES} bytes")
        expected = (
            int(request.expected_roster_revision)
            if request.HasField("expected_roster_revision")
            else None
        )
        record = await self.engine.start_run(
            request.flow_id,
            start_input(request),
            request_id=request.request_id or None,
            labels=dict(request.labels),
            expected_roster_revision=expected,
        )
        return svc.StartRunResponse(run=run_to_proto(record.view()))

    async def GetRun(self, request: svc.GetRunRequest, context: Any) -> svc.GetRunResponse:
        return svc.GetRunResponse(
            run=run_to_proto((await self.engine.get_run(_run_id(request.run_id))).view())
        )

    async def ListRuns(self, request: svc.ListRunsRequest, context: Any) -> svc.ListRunsResponse:
        size = request.page_size or DEFAULT_PAGE
        records, after = await self.engine.list_runs(
            run_filter(request), min(size, MAX_PAGE), runs_page_after(request.page_token)
        )
        return svc.ListRunsResponse(
            runs=[run_to_proto(r.view()) for r in records], next_page_token=runs_page_token(after)
        )

    async def CancelRun(self, request: svc.CancelRunRequest, context: Any) -> svc.CancelRunResponse:
        record = await self.engine.cancel_run(_run_id(request.run_id))
        return svc.CancelRunResponse(run=run_to_proto(record.view()))

    async def WatchRun(
        self, request: svc.WatchRunRequest, context: Any
    ) -> AsyncIterator[svc.WatchRunResponse]:
        run_id = _run_id(request.run_id)
        record = await self.engine.get_run(run_id)
        async for event in self._events_of(run_id, request.after_seq, record.run.state.terminal):
            yield svc.WatchRunResponse(event=event_to_proto(event))
        final = await self.engine.get_run(run_id)
        yield svc.WatchRunResponse(run=run_to_proto(final.view()))

    async def _events_of(
        self, run_id: str, after_seq: int, finished: bool
    ) -> AsyncIterator[MobStructuralEventEnvelope]:
        """The run's events (and its nested runs') after ``after_seq``, until the run's
        last event, or for a finished run until the log's latest cursor now."""
        latest = await self.events.latest_cursor()
        if after_seq > latest:
            raise StaleEventCursor(after_seq, latest)
        if finished and after_seq >= latest:
            return
        queue: asyncio.Queue[MobStructuralEventEnvelope] = asyncio.Queue(maxsize=1024)

        async def pump() -> None:
            watch = self.events.watch(after_seq)
            try:
                async for event in watch:
                    await queue.put(event)
            finally:
                await watch.aclose()

        pumping = asyncio.create_task(pump(), name=f"watch-run-{run_id}")
        try:
            while True:
                try:
                    async with asyncio.timeout(STATE_POLL_SECONDS):
                        event = await queue.get()
                except TimeoutError:
                    if pumping.done():
                        pumping.result()  # a failed watch ends the stream with its error
                        return
                    if (await self.engine.get_run(run_id)).run.state.terminal and queue.empty():
                        if await self.events.latest_cursor() <= latest:
                            return
                        finished = True
                    continue
                owner = _run_of(event)
                if owner == run_id or (owner or "").startswith(run_id + "."):
                    yield event
                    if owner == run_id and event.kind in TERMINAL_KINDS:
                        return
                latest_seen = event.cursor
                if finished and latest_seen >= latest:
                    return
        finally:
            pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pumping


def _run_of(event: MobStructuralEventEnvelope) -> str | None:
    data = event.data
    if isinstance(data, dict):
        value = data.get("run_id")
        return value if isinstance(value, str) else None
    return None
