"""Helpers for the Meerkat compat tests: the services' configuration, the SDK's
``CallbackDispatcher`` wired the way ``MobKitRuntime`` wires providers, ``Suite``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
from meerkat_mobkit.agent_builder import CallbackDispatcher

from mobkit.compat.meerkat import LeaseProviderAdapter, MeerkatProviders
from mobkit.server.config import Settings
from mobkit.server.host import start_services

SERVICES = ["lease", "continuity", "roster", "topology", "customizer"]

ROSTER = """
[profiles]
coordinator = "notebook"
worker = "notebook"

[[agents]]
identity = "coordinator"
profile = "coordinator"
display_name = "Coordinator"
labels = { team = "alpha" }
initial_message = "Plan the week."
runtime_mode_override = "turn_driven"
[agents.context]
region = "eu"

[[agents]]
identity = "worker-1"
profile = "worker"
addressability = "internal_only"
labels = { team = "alpha" }
additional_instructions = ["Report to the coordinator."]

[[agents]]
identity = "worker-2"
profile = "worker"
labels = { team = "beta" }

[[agents]]
identity = "worker-3"
profile = "worker"
labels = { team = "beta" }
"""

SECTIONS: dict[str, Any] = {
    "topology": {"hubs": ["coordinator"], "label_keys": ["team"]},
    "customizer": {
        "rules": [
            {
                "name": "workers",
                "match": {"profile": "worker"},
                "model": "small",
                "system_prompt": "You are a worker.",
                "labels": {"tier": "worker"},
                "external_tools": [
                    {
                        "name": "search",
                        "description": "Search notes",
                        "input_schema": {"type": "object"},
                    }
                ],
            },
            {
                "name": "no-interns",
                "match": {"labels": {"role": "intern"}},
                "refuse": "interns are not deployed",
            },
        ]
    },
}

WAIT = 15.0
"""Upper bound for anything these tests wait for (a 1 s etcd lease to expire)."""

SHORT_TTL = timedelta(seconds=1)


def dispatcher_for(providers: MeerkatProviders) -> CallbackDispatcher:
    """What ``MobKitRuntime`` does with the builder's providers before the gateway starts."""
    dispatcher = CallbackDispatcher()
    dispatcher.register_continuity_store(providers.continuity_store)
    dispatcher.register_lease_provider(providers.lease_provider)
    dispatcher.register_roster_provider(providers.roster)
    dispatcher.register_topology_provider(providers.topology)
    dispatcher.register_agent_customizer(providers.customizer)
    return dispatcher


@dataclass
class Suite:
    channel: grpc.aio.Channel
    providers: MeerkatProviders
    dispatcher: CallbackDispatcher

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        return await self.dispatcher.handle_callback(method, params)

    def short_lived(self) -> CallbackDispatcher:
        """The same services, with leases of :data:`SHORT_TTL` (a holder that stops renewing)."""
        dispatcher = dispatcher_for(self.providers)
        dispatcher.register_lease_provider(
            LeaseProviderAdapter.from_channel(self.channel, ttl=SHORT_TTL, timeout=WAIT)
        )
        return dispatcher


@asynccontextmanager
async def serve_suite(etcd_endpoint: str, etcd_prefix: str, roster: Path) -> AsyncIterator[Suite]:
    """:data:`SERVICES` on port 0 over a real etcd, ``roster`` as the roster file."""
    settings = Settings(
        listen="127.0.0.1:0",
        etcd_endpoints=[etcd_endpoint],
        etcd_prefix=etcd_prefix,
        continuity_backend="etcd",
        roster=str(roster),
        sections=SECTIONS,
        log_level="WARNING",
    ).validate()
    server, resources = await start_services(SERVICES, settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        providers = MeerkatProviders.from_channel(channel, timeout=WAIT)
        yield Suite(channel, providers, dispatcher_for(providers))
    finally:
        await channel.close()
        await server.stop(0)
        await resources.close()
