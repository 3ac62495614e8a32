"""``mobkit serve orchestrator``: compose the providers, run the loops, serve the API."""

from __future__ import annotations

from datetime import timedelta

import grpc

from mobkit.core.holder import Holder
from mobkit.etcd.compactor import Compactor
from mobkit.events.retention import Retention, trimmer_for
from mobkit.flows.service import build_flows
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2_grpc as svc_grpc
from mobkit.modules.service import start_modules
from mobkit.observability import metrics
from mobkit.orchestrator.backend_events import BackendEvents
from mobkit.orchestrator.composition import compose
from mobkit.orchestrator.fleet import ReplicaRegistry, registration_ttl
from mobkit.orchestrator.orchestrator import Orchestrator
from mobkit.orchestrator.routing import Router
from mobkit.orchestrator.runner import OrchestratorRunner
from mobkit.orchestrator.servicer import ERRORS, SERVICE_NAME, OrchestratorServicer
from mobkit.orchestrator.ticket_desk import TicketDesk
from mobkit.orchestrator.ticket_store import EtcdTicketStore
from mobkit.security.tls import channel_for
from mobkit.server.app import ServiceRegistration
from mobkit.server.config import Settings
from mobkit.server.resources import Resources


def holder(settings: Settings) -> str:
    """This process's lease holder string (:class:`~mobkit.core.holder.Holder`)."""
    address = settings.advertise or settings.listen
    return str(Holder.fresh(settings.instance_id(), address))


async def build(settings: Settings, resources: Resources) -> list[ServiceRegistration]:
    providers, closers = await compose(settings, resources)
    instance = holder(settings)
    registry = ReplicaRegistry(
        await resources.etcd(), settings.etcd_prefix, instance, registration_ttl(settings.lease_ttl)
    )
    router = Router(registry, lambda address: channel_for(address, settings))
    await registry.start()
    orchestrator = Orchestrator(
        providers,
        instance=instance,
        lease_ttl=timedelta(seconds=settings.lease_ttl),
        resume_concurrency=settings.resume_concurrency,
        fleet=router,
        receipt_output_limit=settings.receipt_output_limit_bytes,
    )
    try:
        # Before the first reconcile, so turns find their tools; a required module
        # that cannot start fails start-up here, naming it.
        modules = await start_modules(settings, orchestrator.events.emit)
    except BaseException:
        await orchestrator.events.close()
        await registry.stop()
        await router.close()
        for close in reversed(closers):
            await close()
        raise
    orchestrator.modules = resources.providers["modules"] = modules
    runner = OrchestratorRunner(orchestrator, reconcile_interval=settings.reconcile_interval)
    resources.providers["orchestrator"] = orchestrator
    flows = await build_flows(settings, resources, orchestrator, registry.members)
    # Turn tickets are kept as long as the receipts that complete them.
    store = EtcdTicketStore(
        await resources.etcd(), settings.etcd_prefix, settings.idempotency_retention
    )
    tickets = TicketDesk(orchestrator, store, settings.idempotency_retention)
    servicer = OrchestratorServicer(
        orchestrator, providers.events, resources.conditions, tickets=tickets
    )
    # Out of space (etcd NOSPACE...): events say so; every replica compacts etcd on a
    # schedule, coordinated so that one does it each interval.
    backend_events = BackendEvents(providers.events, instance)
    unsubscribe = resources.conditions.subscribe(backend_events)
    compactor = None
    if settings.etcd_compaction_interval > 0:
        compactor = Compactor(
            await resources.etcd(), settings.etcd_prefix, settings.etcd_compaction_interval
        )

    def add(server: grpc.aio.Server) -> None:
        svc_grpc.add_OrchestratorServiceServicer_to_server(servicer, server)

    # One replica at a time trims the event log to its window (see mobkit.events.retention).
    trimmer = trimmer_for(
        providers.events,
        Retention(
            settings.event_retention, settings.event_retention_count, settings.event_trim_interval
        ),
    )

    untrack_census = metrics.track_census(orchestrator.census)  # mobkit_leases_held, ...

    async def stop() -> None:
        untrack_census()
        await flows.engine.stop(release=True)  # before the turns its drives dispatch
        await tickets.stop()  # their tickets stay open for the identities' next owners
        if trimmer is not None:
            await trimmer.stop()
        await modules.stop()  # first: its last events go out with the sink's flush
        await runner.stop(release=True)
        await registry.stop()
        await router.close()
        unsubscribe()
        await backend_events.close()
        if compactor is not None:
            await compactor.stop()
        for close in reversed(closers):
            await close()

    await runner.start()
    await flows.engine.start()
    if compactor is not None:
        compactor.start()
    if trimmer is not None:
        trimmer.start()
    return [ServiceRegistration(SERVICE_NAME, add, ERRORS, on_stop=[stop]), flows.registration]
