"""FlowService beside the orchestrator: the engine of this replica and its servicer.

The orchestrator's ``build`` calls :func:`build_flows`; flows need its turns
(``dispatch``), its event sink, its lease holder string and the fleet registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc

from mobkit.core.types import DispatchInput, DispatchReceipt
from mobkit.flows.engine import FlowEngine
from mobkit.flows.etcd_store import EtcdRunStore
from mobkit.flows.ports import Members
from mobkit.flows.servicer import ERRORS, SERVICE_NAME, FlowServicer
from mobkit.flows.watch import TERMINAL_KINDS
from mobkit.gen.flows.v1 import flows_service_pb2_grpc as svc_grpc
from mobkit.lease.domain import LeaseProvider
from mobkit.orchestrator.orchestrator import Orchestrator
from mobkit.server.app import ServiceRegistration
from mobkit.server.config import Settings
from mobkit.server.resources import Resources


@dataclass
class Flows:
    engine: FlowEngine
    registration: ServiceRegistration


async def build_flows(
    settings: Settings, resources: Resources, orchestrator: Orchestrator, members: Members
) -> Flows:
    async def dispatch(identity: str, message: DispatchInput, timeout: float) -> DispatchReceipt:
        return await orchestrator.dispatch(identity, message, timeout=timeout)

    sink = orchestrator.events

    def emit(kind: str, identity: str | None, data: dict[str, Any]) -> None:
        sink.emit(kind, identity, data)
        if kind in TERMINAL_KINDS:
            sink.hurry()  # a watcher waits for it: no lingering

    leases = orchestrator.p.leases
    if not isinstance(leases, LeaseProvider):  # every lease backend and client is one
        raise TypeError(f"flow runs need a LeaseProvider, not {type(leases).__name__}")
    engine = FlowEngine(
        store=EtcdRunStore(
            await resources.etcd(), settings.etcd_prefix, retention_seconds=settings.run_retention
        ),
        leases=leases,
        roster=orchestrator.p.roster,
        dispatch=dispatch,
        emit=emit,
        instance=orchestrator.instance,
        lease_ttl=timedelta(seconds=settings.lease_ttl),
        members=members,
        latest_cursor=orchestrator.p.events.latest_cursor,
        max_runs=settings.flow_max_runs,
    )
    servicer = FlowServicer(engine, orchestrator.p.events)

    def add(server: grpc.aio.Server) -> None:
        svc_grpc.add_FlowServiceServicer_to_server(servicer, server)

    return Flows(engine, ServiceRegistration(SERVICE_NAME, add, ERRORS))
