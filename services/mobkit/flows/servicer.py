"""FlowService: proto <-> domain and error translation only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from mobkit.core import page_token
from mobkit.core.errors import RosterInvalid, StaleEventCursor
from mobkit.core.identity import parse_name
from mobkit.events.domain import EventLog
from mobkit.flows import errors as fe
from mobkit.flows.engine import FlowEngine
from mobkit.flows.watch import run_events
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
from mobkit.wire.orchestrator import event_to_proto, position_page_after, position_page_token

SERVICE_NAME = "mobkit.flows.v1.FlowService"
DEFAULT_PAGE, MAX_PAGE = 100, 1000
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
    RosterInvalid,  # no valid roster to read flows from
    # The roster is the service's state, not the request's argument.
    overrides={RosterInvalid: grpc.StatusCode.FAILED_PRECONDITION},
)


def _page_size(value: int) -> int:
    return page_token.page_size(value, DEFAULT_PAGE, MAX_PAGE)


class FlowServicer(svc_grpc.FlowServiceServicer):
    def __init__(self, engine: FlowEngine, events: EventLog) -> None:
        self.engine = engine
        self.events = events

    async def ListFlows(self, request: svc.ListFlowsRequest, context: Any) -> svc.ListFlowsResponse:
        size = _page_size(request.page_size)  # bad input first, before any read
        start = position_page_after(request.page_token)
        snapshot = await self.engine.roster.snapshot(fresh=True)
        page = snapshot.flows[start : start + size]
        more = start + size < len(snapshot.flows)
        return svc.ListFlowsResponse(
            flows=[flow_to_proto(f) for f in page],
            roster_revision=snapshot.revision,
            next_page_token=position_page_token(start + size) if more else "",
        )

    async def StartRun(self, request: svc.StartRunRequest, context: Any) -> svc.StartRunResponse:
        parse_name(request.flow_id, "flow_id")
        parse_name(request.request_id, "request_id", required=False)
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
            run=run_to_proto(
                (await self.engine.get_run(parse_name(request.run_id, "run_id"))).view()
            )
        )

    async def ListRuns(self, request: svc.ListRunsRequest, context: Any) -> svc.ListRunsResponse:
        records, after = await self.engine.list_runs(
            run_filter(request), _page_size(request.page_size), runs_page_after(request.page_token)
        )
        return svc.ListRunsResponse(
            runs=[run_to_proto(r.view()) for r in records], next_page_token=runs_page_token(after)
        )

    async def CancelRun(self, request: svc.CancelRunRequest, context: Any) -> svc.CancelRunResponse:
        record = await self.engine.cancel_run(parse_name(request.run_id, "run_id"))
        return svc.CancelRunResponse(run=run_to_proto(record.view()))

    async def WatchRun(
        self, request: svc.WatchRunRequest, context: Any
    ) -> AsyncIterator[svc.WatchRunResponse]:
        run_id = parse_name(request.run_id, "run_id")
        record = await self.engine.get_run(run_id)
        finished = record.run.state.terminal
        async for event in run_events(
            self.events,
            self.engine.store,
            run_id,
            request.after_seq or record.events_from,
            finished,
        ):
            yield svc.WatchRunResponse(event=event_to_proto(event))
        final = await self.engine.get_run(run_id)
        yield svc.WatchRunResponse(run=run_to_proto(final.view()))
