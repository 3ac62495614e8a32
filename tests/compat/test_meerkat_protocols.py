"""The adapters satisfy the SDK's runtime-checkable protocols, async where the SDK is."""

from __future__ import annotations

import inspect

import grpc
import pytest
from meerkat_mobkit import MobKit
from meerkat_mobkit import identity_first_providers as sdk

from mobkit.compat.meerkat import (
    AgentCustomizerAdapter,
    ContinuityStoreAdapter,
    LeaseProviderAdapter,
    MeerkatProviders,
    RosterProviderAdapter,
    TopologyProviderAdapter,
)

PAIRS = [
    ("continuity_store", ContinuityStoreAdapter, sdk.ContinuityStoreProvider),
    ("lease_provider", LeaseProviderAdapter, sdk.LeaseProviderProtocol),
    ("roster", RosterProviderAdapter, sdk.RosterProviderProtocol),
    ("topology", TopologyProviderAdapter, sdk.TopologyProviderProtocol),
    ("customizer", AgentCustomizerAdapter, sdk.AgentCustomizerProtocol),
]


def protocol_methods(protocol: type) -> list[str]:
    return [
        name
        for name, member in vars(protocol).items()
        if not name.startswith("_") and inspect.isfunction(member)
    ]


@pytest.mark.parametrize(("field", "cls", "protocol"), PAIRS, ids=[p[0] for p in PAIRS])
async def test_each_adapter_is_an_instance_of_its_sdk_protocol(
    field: str, cls: type, protocol: type
) -> None:
    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:  # never called
        adapter = getattr(MeerkatProviders.from_channel(channel), field)
        assert type(adapter) is cls
        assert isinstance(adapter, protocol)
        for name in protocol_methods(protocol):
            assert inspect.iscoroutinefunction(getattr(adapter, name)) == (
                inspect.iscoroutinefunction(getattr(protocol, name))
            ), name
        # The protocols are not vacuous: another provider's adapter does not pass.
        others = [p for f, _, p in PAIRS if f != field and protocol_methods(p)]
        assert not any(isinstance(adapter, other) for other in others)


def test_every_protocol_is_covered() -> None:
    expected = {
        name
        for name, value in vars(sdk).items()
        if isinstance(value, type) and getattr(value, "_is_runtime_protocol", False)
    }
    assert expected == {p.__name__ for _, _, p in PAIRS}


async def test_register_sets_every_provider_on_the_builder() -> None:
    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:  # never called
        providers = MeerkatProviders.from_channel(channel)
        builder = MobKit.builder()
        assert providers.register(builder) is builder
        config = builder._config
        assert config.continuity_store is providers.continuity_store
        assert config.lease_provider is providers.lease_provider
        assert config.roster_provider is providers.roster
        assert config.topology_provider is providers.topology
        assert config.agent_customizer is providers.customizer
