"""``mobkit serve lease``: the etcd lease provider behind the LeaseService."""

from __future__ import annotations

from datetime import timedelta

from mobkit.gen.lease.v1 import lease_service_pb2_grpc as pb_grpc
from mobkit.lease.etcd_backend import EtcdLeaseProvider
from mobkit.lease.servicer import ERRORS, SERVICE_NAME, LeaseServicer
from mobkit.server.app import ServiceRegistration
from mobkit.server.config import Settings
from mobkit.server.resources import Resources


async def build(settings: Settings, resources: Resources) -> ServiceRegistration:
    provider = EtcdLeaseProvider(await resources.etcd(), settings.etcd_prefix)
    resources.providers["lease"] = provider  # the in-process orchestrator uses it directly
    servicer = LeaseServicer(provider, default_ttl=timedelta(seconds=settings.lease_ttl))
    return ServiceRegistration(
        SERVICE_NAME,
        lambda server: pb_grpc.add_LeaseServiceServicer_to_server(servicer, server),
        ERRORS,
    )
