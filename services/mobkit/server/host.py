"""Host one or more catalog services in this process."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Sequence

from mobkit.server.addresses import check_listen_free
from mobkit.server.app import MobKitServer, ServerConfig, ServiceRegistration, build_server
from mobkit.server.backends import service_backends, uses_etcd
from mobkit.server.catalog import CATALOG, ServiceSpec
from mobkit.server.config import Settings, split_hostport
from mobkit.server.resources import Resources
from mobkit.server.startup import check_etcd_answers
from mobkit.server.wiring import secure_and_observe

# Build order matters for `all`: the orchestrator composes the providers built before it.
ORDER = ("lease", "continuity", "roster", "topology", "customizer", "runtime", "orchestrator")

IMPLEMENTATIONS: dict[str, str] = {
    "lease": "mobkit.lease.service",
    "continuity": "mobkit.continuity.service",
    "runtime": "mobkit.runtime.service",
    "roster": "mobkit.roster.service",
    "topology": "mobkit.topology.service",
    "customizer": "mobkit.customizer.service",
    "orchestrator": "mobkit.orchestrator.service",
}
"""Service key -> module exposing ``async def build(settings, resources) -> ServiceRegistration``."""


def unimplemented(spec: ServiceSpec) -> ServiceRegistration:
    """The generated base servicer: every RPC answers UNIMPLEMENTED."""
    base = spec.base_servicer()
    add = spec.add_function()
    return ServiceRegistration(spec.full_name, lambda server: add(base(), server), errors={})


async def registrations(
    key: str, settings: Settings, resources: Resources
) -> list[ServiceRegistration]:
    """The services ``key`` serves: its own, and any it brings along (the orchestrator
    serves FlowService too)."""
    spec = CATALOG[key]
    module = IMPLEMENTATIONS.get(key)
    if module is None:
        return [unimplemented(spec)]
    built: ServiceRegistration | Sequence[ServiceRegistration] = await importlib.import_module(
        module
    ).build(settings, resources)
    regs = [built] if isinstance(built, ServiceRegistration) else list(built)
    return [dataclasses.replace(r, backends=service_backends(key, settings)) for r in regs]


def expand(keys: Sequence[str]) -> list[str]:
    if "all" in keys:
        return list(ORDER)
    unknown = [k for k in keys if k not in CATALOG]
    if unknown:
        raise ValueError(f"unknown service {unknown[0]!r}; choose from {', '.join(ORDER)} or all")
    return [k for k in ORDER if k in keys]


_BACKEND_TROUBLE = frozenset({"RESOURCE_EXHAUSTED", "UNAVAILABLE"})


def _on_trouble(resources: Resources) -> Callable[[str, str, float], None]:
    """RPC observer: a RESOURCE_EXHAUSTED or UNAVAILABLE answer may be etcd out of
    space or away; check now."""

    def observe(method: str, code: str, elapsed: float) -> None:
        if code in _BACKEND_TROUBLE:
            resources.check_backends_now()

    return observe


async def start_services(
    keys: Sequence[str], settings: Settings, resources: Resources | None = None
) -> tuple[MobKitServer, Resources]:
    """Build and start the services; the caller stops the server then closes resources."""
    resources = resources or Resources(settings)
    host, port = split_hostport(settings.listen)
    if port == 0:
        # Fix the port before building: the orchestrator advertises it as lease holder.
        from mobkit.etcd.process import free_ports

        settings.listen = f"{host}:{free_ports(1)[0]}"
    try:
        check_listen_free(settings)
        if settings.etcd_endpoints and uses_etcd(expand(keys), settings):
            await check_etcd_answers(resources)  # before any service loads anything
        regs = [r for k in expand(keys) for r in await registrations(k, settings, resources)]
        config = ServerConfig(
            regs,
            listen=settings.listen,
            grace=settings.grace,
            observers=[_on_trouble(resources)],
        )
        server, _ = build_server(await secure_and_observe(config, settings, resources))
        await server.start()
        # While etcd (or another backend) is full or away, its services are NOT_SERVING.
        server.follow(resources.conditions)
        resources.watch_etcd()
    except BaseException:
        await resources.close()
        raise
    return server, resources
