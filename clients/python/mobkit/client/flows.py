"""The FlowService, as asyncio and blocking clients returning domain dataclasses.

::

    async with AsyncMobKit() as mk:
        run = await mk.flows.start_run("ask-team", {"question": "why?"}, request_id="q-1")
        async for item in mk.flows.watch_run(run.run_id):
            print(item)  # events (MobStructuralEventEnvelope), then the finished RunView
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import grpc

from mobkit.client._loop import LoopThread
from mobkit.client.types import Page
from mobkit.core.types import JsonValue, MobStructuralEventEnvelope
from mobkit.flows import errors as flow_errors
from mobkit.flows.definition import FlowDefinition
from mobkit.flows.records import RunView
from mobkit.flows.run import RunState
from mobkit.gen.flows.v1 import flows_service_pb2 as svc
from mobkit.gen.flows.v1 import flows_service_pb2_grpc as svc_grpc
from mobkit.wire.calls import Calls, decoder
from mobkit.wire.flows import RUN_STATES, flow_from_proto, run_from_proto
from mobkit.wire.json import put_json
from mobkit.wire.orchestrator import event_from_proto

R = TypeVar("R")
ERRORS = (
    flow_errors.FlowNotFound,
    flow_errors.RunNotFound,
    flow_errors.FlowFailed,
    flow_errors.RunCanceled,
    flow_errors.FlowTurnTimedOut,
    flow_errors.SchemaValidation,
    flow_errors.InsufficientTargets,
    flow_errors.FrameDepthLimitExceeded,
    flow_errors.SpecRevisionConflict,
)
"""The flow reasons this client decodes into their classes."""

WatchItem = MobStructuralEventEnvelope | RunView


class AsyncFlowClient:
    """Calls a FlowService over ``channel`` (which belongs to the caller)."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float | None = None) -> None:
        self._stub = svc_grpc.FlowServiceStub(channel)
        self._timeout = timeout
        self._calls = Calls(decoder(*ERRORS), timeout=None)

    async def _call(
        self, method: Callable[..., Awaitable[R]], request: Any, timeout: float | None
    ) -> R:
        # Deadlines and UNAVAILABLE retries are the channel's (RetryInterceptor).
        return await self._calls(method, request, timeout=timeout or self._timeout)

    async def list_flows(self, *, timeout: float | None = None) -> list[FlowDefinition]:
        """Every flow of the roster, in roster order (all pages)."""
        flows: list[FlowDefinition] = []
        token = ""
        while True:
            request = svc.ListFlowsRequest(page_size=1000, page_token=token)
            reply = await self._call(self._stub.ListFlows, request, timeout)
            flows.extend(flow_from_proto(f) for f in reply.flows)
            if not (token := reply.next_page_token):
                return flows

    async def start_run(
        self,
        flow_id: str,
        input: JsonValue | None = None,
        *,
        request_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        expected_roster_revision: int | None = None,
        timeout: float | None = None,
    ) -> RunView:
        """Start a run (RUNNING at once). With a ``request_id`` the call is safe to
        retry: the same id answers the run it started."""
        request = svc.StartRunRequest(
            flow_id=flow_id, request_id=request_id or "", labels=dict(labels or {})
        )
        put_json(request, "input", input)
        if expected_roster_revision is not None:
            request.expected_roster_revision = expected_roster_revision
        reply = await self._call(self._stub.StartRun, request, timeout)
        return run_from_proto(reply.run)

    async def get_run(self, run_id: str, *, timeout: float | None = None) -> RunView:
        reply = await self._call(self._stub.GetRun, svc.GetRunRequest(run_id=run_id), timeout)
        return run_from_proto(reply.run)

    async def list_runs_page(
        self,
        *,
        flow_id: str | None = None,
        states: Sequence[RunState] = (),
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Page[RunView]:
        request = svc.ListRunsRequest(
            flow_id=flow_id or "",
            states=[RUN_STATES[s] for s in states],
            labels=dict(labels or {}),
            page_size=page_size,
            page_token=page_token,
        )
        reply = await self._call(self._stub.ListRuns, request, timeout)
        return Page(tuple(run_from_proto(r) for r in reply.runs), reply.next_page_token)

    async def list_runs(
        self,
        *,
        flow_id: str | None = None,
        states: Sequence[RunState] = (),
        labels: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[RunView]:
        """Every matching run in creation order, fetching pages as it goes."""
        token = ""
        while True:
            page = await self.list_runs_page(
                flow_id=flow_id, states=states, labels=labels, page_token=token, timeout=timeout
            )
            for run in page.items:
                yield run
            if not (token := page.next_page_token):
                return

    async def cancel_run(self, run_id: str, *, timeout: float | None = None) -> RunView:
        request = svc.CancelRunRequest(run_id=run_id)
        reply = await self._call(self._stub.CancelRun, request, timeout)
        return run_from_proto(reply.run)

    async def watch_run(self, run_id: str, *, after_seq: int = 0) -> AsyncIterator[WatchItem]:
        """The run's events after ``after_seq``, then the finished run (the last item)."""
        call = self._stub.WatchRun(svc.WatchRunRequest(run_id=run_id, after_seq=after_seq))
        try:
            async for item in call:
                if item.HasField("event"):
                    yield event_from_proto(item.event)
                else:
                    yield run_from_proto(item.run)
        except grpc.RpcError as err:
            raise self._calls.decode(err) from None
        finally:
            call.cancel()


class FlowClient:
    """The blocking twin of :class:`AsyncFlowClient` (``MobKit.flows``)."""

    def __init__(self, loop: LoopThread, client: AsyncFlowClient) -> None:
        self._loop = loop
        self._async = client

    def list_flows(self, *, timeout: float | None = None) -> list[FlowDefinition]:
        return self._loop.run(self._async.list_flows(timeout=timeout))

    def start_run(
        self,
        flow_id: str,
        input: JsonValue | None = None,
        *,
        request_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        expected_roster_revision: int | None = None,
        timeout: float | None = None,
    ) -> RunView:
        return self._loop.run(
            self._async.start_run(
                flow_id,
                input,
                request_id=request_id,
                labels=labels,
                expected_roster_revision=expected_roster_revision,
                timeout=timeout,
            )
        )

    def get_run(self, run_id: str, *, timeout: float | None = None) -> RunView:
        return self._loop.run(self._async.get_run(run_id, timeout=timeout))

    def list_runs_page(self, **kwargs: Any) -> Page[RunView]:
        return self._loop.run(self._async.list_runs_page(**kwargs))

    def cancel_run(self, run_id: str, *, timeout: float | None = None) -> RunView:
        return self._loop.run(self._async.cancel_run(run_id, timeout=timeout))

    def watch_run(self, run_id: str, *, after_seq: int = 0) -> Iterator[WatchItem]:
        return self._loop.iterate(self._async.watch_run(run_id, after_seq=after_seq))
