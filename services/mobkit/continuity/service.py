"""Builds the continuity store service for ``mobkit serve continuity`` / ``mobkit up``.

``settings.continuity_backend`` picks the engine: ``sqlite`` (embedded default, file at
``settings.resolved_sqlite_path()``), ``etcd`` (the process's shared etcd client, keys
under ``<etcd_prefix>/continuity/``) or ``memory``. Optional TOML section::

    [continuity]
    lease_fence = true   # etcd: check the lease key's create_revision in each write txn
    max_txn_ops = 128    # etcd's --max-txn-ops
    max_request_bytes = 1572864  # etcd's --max-request-bytes
"""

from __future__ import annotations

from typing import Any

import grpc

from mobkit.continuity.operations import PlanStore
from mobkit.continuity.servicer import ERRORS, SERVICE_NAME, ContinuityServicer
from mobkit.core.errors import InvalidArgument
from mobkit.gen.continuity.v1 import continuity_service_pb2_grpc as svc_grpc
from mobkit.server.app import ServiceRegistration
from mobkit.server.config import Settings
from mobkit.server.resources import Resources

SECTION_KEYS = frozenset({"lease_fence", "max_txn_ops", "max_request_bytes"})


async def open_store(settings: Settings, resources: Resources) -> PlanStore:
    section: dict[str, Any] = dict(settings.sections.get("continuity", {}))
    unknown = set(section) - SECTION_KEYS
    if unknown:
        raise InvalidArgument("continuity", f"unknown option(s) {', '.join(sorted(unknown))}")
    limit = settings.snapshot_limit_bytes
    retention = settings.idempotency_retention
    backend = settings.continuity_backend
    if backend == "etcd":
        from mobkit.continuity.etcd_backend import (
            ETCD_DEFAULT_MAX_REQUEST_BYTES,
            ETCD_DEFAULT_MAX_TXN_OPS,
            EtcdContinuityStore,
        )

        return EtcdContinuityStore(
            await resources.etcd(),
            prefix=settings.etcd_prefix,
            snapshot_limit_bytes=limit,
            receipt_retention=retention,
            lease_fence=bool(section.get("lease_fence", True)),
            max_txn_ops=int(section.get("max_txn_ops", ETCD_DEFAULT_MAX_TXN_OPS)),
            max_request_bytes=int(section.get("max_request_bytes", ETCD_DEFAULT_MAX_REQUEST_BYTES)),
        )
    if backend == "sqlite":
        from mobkit.continuity.sqlite_backend import SqliteContinuityStore

        store = await SqliteContinuityStore.open(
            settings.resolved_sqlite_path(), snapshot_limit_bytes=limit, receipt_retention=retention
        )
        # A full disk turns health NOT_SERVING and shows in status, like a full etcd.
        store.on_full = lambda detail: resources.conditions.report_full("sqlite", detail)
        store.on_recovered = lambda: resources.conditions.report_recovered("sqlite")
        store.on_unavailable = lambda d: resources.conditions.report_unavailable("sqlite", d)
        store.on_available = lambda: resources.conditions.report_available("sqlite")
        return store
    if backend == "memory":
        from mobkit.continuity.memory import MemoryContinuityStore

        return MemoryContinuityStore(snapshot_limit_bytes=limit, receipt_retention=retention)
    raise InvalidArgument("continuity_backend", f"unknown backend {backend!r}")


async def build(settings: Settings, resources: Resources) -> ServiceRegistration:
    store = await open_store(settings, resources)
    resources.providers["continuity"] = store
    resources.on_close(store.close)  # also when a later service fails to start (idempotent)
    servicer = ContinuityServicer(store)

    def add(server: grpc.aio.Server) -> None:
        svc_grpc.add_ContinuityStoreServiceServicer_to_server(servicer, server)

    return ServiceRegistration(SERVICE_NAME, add, ERRORS, on_stop=(store.close,))
