"""MobKit's services as drop-in providers for Meerkat MobKit's Python SDK (``meerkat-mobkit``).

Install with ``pip install mobkit[meerkat]``. Each adapter satisfies one of the SDK's
runtime-checkable protocols (``meerkat_mobkit.identity_first_providers``), speaks the
SDK's own models, and calls the matching MobKit service over gRPC::

    providers = MeerkatProviders.from_channels(
        lease=grpc.aio.insecure_channel("mobkit-lease:7700"),   # in the app's event loop
        continuity=..., roster=..., topology=..., customizer=...,
    )
    builder = providers.register(MobKit.builder().mob("mob.toml")).scratch_dir(".scratch")
    runtime = await builder.build()

The gateway calls the adapters back on the event loop the runtime was built on, so
create the channels on that loop too. Run the five provider services only: MobKit's
own orchestrator (``mobkit up``, ``mobkit serve all``) would take the same leases.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import grpc
from meerkat_mobkit import MobKitBuilder

from mobkit.compat.meerkat.continuity import ContinuityStoreAdapter
from mobkit.compat.meerkat.customizer import AgentCustomizerAdapter
from mobkit.compat.meerkat.errors import UnexpectedAnswer
from mobkit.compat.meerkat.lease import DEFAULT_TTL, LeaseProviderAdapter
from mobkit.compat.meerkat.roster import RosterProviderAdapter
from mobkit.compat.meerkat.topology import TopologyProviderAdapter

__all__ = [
    "AgentCustomizerAdapter",
    "ContinuityStoreAdapter",
    "LeaseProviderAdapter",
    "MeerkatProviders",
    "RosterProviderAdapter",
    "TopologyProviderAdapter",
    "UnexpectedAnswer",
]


@dataclass(frozen=True, slots=True)
class MeerkatProviders:
    """The five adapters, ready for ``MobKitBuilder``."""

    continuity_store: ContinuityStoreAdapter
    lease_provider: LeaseProviderAdapter
    roster: RosterProviderAdapter
    topology: TopologyProviderAdapter
    customizer: AgentCustomizerAdapter

    @classmethod
    def from_channel(
        cls,
        channel: grpc.aio.Channel,
        *,
        lease_ttl: timedelta = DEFAULT_TTL,
        timeout: float = 30.0,
    ) -> MeerkatProviders:
        """All five services behind one address."""
        return cls.from_channels(
            lease=channel,
            continuity=channel,
            roster=channel,
            topology=channel,
            customizer=channel,
            lease_ttl=lease_ttl,
            timeout=timeout,
        )

    @classmethod
    def from_channels(
        cls,
        *,
        lease: grpc.aio.Channel,
        continuity: grpc.aio.Channel,
        roster: grpc.aio.Channel,
        topology: grpc.aio.Channel,
        customizer: grpc.aio.Channel,
        lease_ttl: timedelta = DEFAULT_TTL,
        timeout: float = 30.0,
    ) -> MeerkatProviders:
        """One channel per service (``mobkit serve SERVICE`` each); ``lease_ttl`` is the
        lifetime of new grants and ``timeout`` bounds each call (seconds)."""
        return cls(
            continuity_store=ContinuityStoreAdapter.from_channel(continuity, timeout=timeout),
            lease_provider=LeaseProviderAdapter.from_channel(lease, ttl=lease_ttl, timeout=timeout),
            roster=RosterProviderAdapter.from_channel(roster, timeout=timeout),
            topology=TopologyProviderAdapter.from_channel(topology, timeout=timeout),
            customizer=AgentCustomizerAdapter.from_channel(customizer, timeout=timeout),
        )

    def register(self, builder: MobKitBuilder) -> MobKitBuilder:
        """Set every provider on a ``MobKitBuilder``; the SDK also needs ``scratch_dir()``."""
        return (
            builder.continuity_store(self.continuity_store)
            .lease_provider(self.lease_provider)
            .roster(self.roster)
            .topology_provider(self.topology)
            .agent_customizer(self.customizer)
        )
