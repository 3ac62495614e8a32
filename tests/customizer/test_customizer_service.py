"""AgentCustomizerService on a real gRPC server (port 0), through the client adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mobkit.core.errors import (
    CustomizerFailed,
    CustomizerUnavailable,
    InvalidArgument,
    InvalidIdentity,
)
from mobkit.core.types import (
    AgentBuildContext,
    AgentBuildDraft,
    DurableAgentSpec,
    ExternalToolDef,
    ManagedPeerEdge,
)
from mobkit.customizer.client import GrpcAgentCustomizer
from mobkit.customizer.domain import after_create_best_effort
from mobkit.gen.customizer.v1 import customizer_service_pb2 as pb
from mobkit.gen.customizer.v1 import customizer_service_pb2_grpc as pb_grpc
from mobkit.server.config import Settings
from mobkit.server.host import start_services

SECTION: dict[str, Any] = {
    "rules": [
        {
            "name": "workers",
            "match": {"profile": "worker"},
            "model": "small",
            "labels": {"tier": "worker"},
            "external_tools": [
                {"name": "search", "description": "Search", "input_schema": {"type": "object"}}
            ],
        },
        {"name": "gate", "match": {"labels": {"role": "intern"}}, "refuse": "no interns"},
    ]
}


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    settings = Settings(listen="127.0.0.1:0", sections={"customizer": SECTION})
    server, resources = await start_services(["customizer"], settings)
    chan = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield chan
    finally:
        await chan.close()
        await server.stop(0)
        await resources.close()


def build_context(identity: str) -> AgentBuildContext:
    return AgentBuildContext(
        identity=identity,  # type: ignore[arg-type]
        active_peers=("coordinator",),  # type: ignore[arg-type]
        managed_edges=(ManagedPeerEdge.new(identity, "coordinator"),),
    )


async def test_customize_build_applies_spec_and_rules(channel: grpc.aio.Channel) -> None:
    client = GrpcAgentCustomizer(channel)
    spec = DurableAgentSpec(
        identity="worker-1",  # type: ignore[arg-type]
        profile="worker",
        labels={"team": "alpha"},
        context={"region": "eu"},
        additional_instructions=("Be brief.",),
    )
    draft = await client.customize_build(
        build_context("worker-1"), spec, AgentBuildDraft(system_prompt="base")
    )
    assert draft == AgentBuildDraft(
        model="small",
        system_prompt="base",
        additional_instructions=["Be brief."],
        labels={"team": "alpha", "tier": "worker"},
        app_context={"region": "eu"},
        external_tools=[ExternalToolDef("search", "Search", {"type": "object"})],
    )


async def test_refusal_is_customizer_failed(channel: grpc.aio.Channel) -> None:
    spec = DurableAgentSpec(identity="w9", profile="worker", labels={"role": "intern"})  # type: ignore[arg-type]
    with pytest.raises(CustomizerFailed) as info:
        await GrpcAgentCustomizer(channel).customize_build(
            build_context("w9"), spec, AgentBuildDraft()
        )
    assert info.value.identity == "w9" and "no interns" in info.value.detail

    from mobkit.wire import customizer as wire
    from mobkit.wire.roster import spec_to_proto

    stub = pb_grpc.AgentCustomizerServiceStub(channel)
    request = pb.CustomizeBuildRequest(
        context=wire.build_context_to_proto(build_context("w9")), spec=spec_to_proto(spec)
    )
    with pytest.raises(grpc.aio.AioRpcError) as raw:
        await stub.CustomizeBuild(request, timeout=10)
    assert raw.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    status = rpc_status.from_call(raw.value)
    assert status is not None
    (detail,) = status.details
    info_msg = error_details_pb2.ErrorInfo()
    assert detail.Unpack(info_msg)
    assert (info_msg.reason, info_msg.domain) == ("CUSTOMIZER_FAILED", "mobkit.dev")
    assert info_msg.metadata["identity"] == "w9"


async def test_bad_requests(channel: grpc.aio.Channel) -> None:
    client = GrpcAgentCustomizer(channel)
    spec = DurableAgentSpec(identity="a", profile="worker")  # type: ignore[arg-type]
    with pytest.raises(InvalidIdentity):
        await client.customize_build(
            AgentBuildContext(identity="a b"),
            spec,
            AgentBuildDraft(),  # type: ignore[arg-type]
        )
    with pytest.raises(InvalidArgument):
        await client.customize_build(build_context("b"), spec, AgentBuildDraft())
    with pytest.raises(InvalidIdentity):
        await client.after_create("", "s1")


async def test_after_create(channel: grpc.aio.Channel) -> None:
    client = GrpcAgentCustomizer(channel)
    await client.after_create("worker-1", "session-1", {"created": True})
    assert await after_create_best_effort(client, "worker-1", "session-1", None)


async def test_unreachable_customizer_is_unavailable_and_after_create_only_logs() -> None:
    from mobkit.etcd.process import free_ports

    (port,) = free_ports(1)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as chan:
        client = GrpcAgentCustomizer(chan, timeout=2)
        with pytest.raises(CustomizerUnavailable) as info:
            await client.customize_build(
                build_context("a"),
                DurableAgentSpec(identity="a", profile="p"),
                AgentBuildDraft(),  # type: ignore[arg-type]
            )
        assert info.value.reason == "BACKEND_UNAVAILABLE"
        assert not await after_create_best_effort(client, "a", "s", None)


async def test_bad_rules_fail_the_start() -> None:
    with pytest.raises(InvalidArgument):
        await start_services(
            ["customizer"],
            Settings(listen="127.0.0.1:0", sections={"customizer": {"rules": [{"bogus": 1}]}}),
        )
