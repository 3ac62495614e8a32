"""The services of API.md: their proto names and where their implementations live.

``mobkit serve SERVICE`` looks the service up here. An implementation module
exposes ``async def build(settings, resources) -> ServiceRegistration``; a
service whose module is not listed is served by its generated base servicer,
which answers UNIMPLEMENTED (identity validation still applies).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServiceSpec:
    key: str
    package: str
    service: str
    impl: str | None = None

    @property
    def full_name(self) -> str:
        return f"mobkit.{self.package}.v1.{self.service}"

    def grpc_module(self) -> Any:
        return importlib.import_module(
            f"mobkit.gen.{self.package}.v1.{self.package}_service_pb2_grpc"
        )

    def add_function(self) -> Any:
        return getattr(self.grpc_module(), f"add_{self.service}Servicer_to_server")

    def base_servicer(self) -> Any:
        return getattr(self.grpc_module(), f"{self.service}Servicer")


CATALOG: dict[str, ServiceSpec] = {
    s.key: s
    for s in (
        ServiceSpec("lease", "lease", "LeaseService"),
        ServiceSpec("continuity", "continuity", "ContinuityStoreService"),
        ServiceSpec("roster", "roster", "RosterService"),
        ServiceSpec("topology", "topology", "TopologyService"),
        ServiceSpec("customizer", "customizer", "AgentCustomizerService"),
        ServiceSpec("runtime", "runtime", "AgentRuntimeService"),
        ServiceSpec("orchestrator", "orchestrator", "OrchestratorService"),
    )
}

SERVED_WITH: dict[str, tuple[ServiceSpec, ...]] = {
    # Flow runs dispatch the orchestrator's turns: FlowService is served beside it.
    "orchestrator": (ServiceSpec("flows", "flows", "FlowService"),),
}
"""Services that a catalog service's process serves too (not servable on their own)."""

EVERY_SERVICE: tuple[ServiceSpec, ...] = (
    *CATALOG.values(),
    *(spec for specs in SERVED_WITH.values() for spec in specs),
)
