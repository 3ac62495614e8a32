"""Compose the orchestrator's providers: in-process or over gRPC, by configuration.

For each provider, ``--<provider>-addr`` selects the gRPC client adapter;
otherwise the in-process instance is used — the one already built in this
process (``serve all``) or a new one built from the same settings.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from mobkit.events import service as events_service
from mobkit.orchestrator.orchestrator import Providers
from mobkit.security.tls import channel_for
from mobkit.server.config import Settings
from mobkit.server.host import IMPLEMENTATIONS
from mobkit.server.resources import Resources

_CLIENTS: dict[str, tuple[str, str]] = {
    "lease": ("mobkit.lease.client", "GrpcLeaseProvider"),
    "continuity": ("mobkit.continuity.client", "GrpcContinuityStore"),
    "roster": ("mobkit.roster.client", "GrpcRosterProvider"),
    "topology": ("mobkit.topology.client", "GrpcTopologyProvider"),
    "customizer": ("mobkit.customizer.client", "GrpcAgentCustomizer"),
    "runtime": ("mobkit.runtime.client", "GrpcAgentRuntime"),
}

Closer = Callable[[], Awaitable[None]]


async def _provider(
    key: str, settings: Settings, resources: Resources, closers: list[Closer]
) -> Any:
    addr = settings.provider_addr(key)
    if addr:
        module, name = _CLIENTS[key]
        channel = channel_for(addr, settings)
        closers.append(channel.close)
        return getattr(importlib.import_module(module), name)(channel)
    if key not in resources.providers:
        # Built for its in-process instance only; its servicer is not served here.
        reg = await importlib.import_module(IMPLEMENTATIONS[key]).build(settings, resources)
        closers.extend(reg.on_stop)
    return resources.providers[key]


async def compose(settings: Settings, resources: Resources) -> tuple[Providers, list[Closer]]:
    closers: list[Closer] = []
    p = {k: await _provider(k, settings, resources, closers) for k in _CLIENTS}
    events = await events_service.build(settings, resources)
    providers = Providers(
        leases=p["lease"],
        continuity=p["continuity"],
        roster=p["roster"],
        topology=p["topology"],
        customizer=p["customizer"],
        runtime=p["runtime"],
        events=events,
    )
    return providers, closers
