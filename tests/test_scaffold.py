"""The shared server scaffold: health, reflection, identity validation, drain on shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from mobkit.gen.topology.v1 import topology_service_pb2 as topo_pb2
from mobkit.gen.topology.v1 import topology_service_pb2_grpc as topo_grpc
from mobkit.server.app import ServerConfig, ServiceRegistration, build_server
from mobkit.server.catalog import CATALOG
from mobkit.server.errors import common_errors
from mobkit.server.validation import IDENTITY_FIELDS, carries_identities
from mobkit.testing.servers import running_services

ALL = [spec.full_name for spec in CATALOG.values()]


def _reason(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)
    assert status is not None, "error carries no google.rpc.Status"
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
    assert len(infos) == 1, f"expected exactly one ErrorInfo, got {len(infos)}"
    assert infos[0].domain == "mobkit.dev"
    return infos[0].reason


@pytest.fixture
async def suite(etcd_session: Any, tmp_path: Any) -> Any:
    async with running_services(
        ["all"],
        etcd_endpoints=[etcd_session.endpoint],
        etcd_prefix=f"/scaffold-{tmp_path.name}",
        data_dir=str(tmp_path),
        continuity_backend="memory",
    ) as running:
        yield running


async def test_health_serving_for_every_service(suite: Any) -> None:
    _, channel, _ = suite
    stub = health_pb2_grpc.HealthStub(channel)
    for name in ["", *ALL]:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name


async def test_reflection_lists_every_service(suite: Any) -> None:
    _, channel, _ = suite
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def requests() -> Any:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names: set[str] = set()
    async for reply in stub.ServerReflectionInfo(requests(), timeout=5):
        names |= {s.name for s in reply.list_services_response.service}
    assert set(ALL) <= names
    assert "grpc.health.v1.Health" in names


def _poison(msg: Message, bad: str) -> bool:
    """Put ``bad`` into the first identity field of ``msg`` (recursing). True if done."""
    for field in msg.DESCRIPTOR.fields:
        repeated = field.is_repeated
        if field.type == field.TYPE_STRING and field.name in IDENTITY_FIELDS:
            if repeated:
                getattr(msg, field.name).append(bad)
            else:
                setattr(msg, field.name, bad)
            return True
        if field.type != field.TYPE_MESSAGE or not carries_identities(field.message_type):
            continue
        child = getattr(msg, field.name).add() if repeated else getattr(msg, field.name)
        if _poison(child, bad):
            return True
    return False


def _identity_rpcs() -> list[tuple[str, Any, bool]]:
    cases = []
    for spec in CATALOG.values():
        pb2 = spec.grpc_module()
        service = (
            pb2.DESCRIPTOR.services_by_name[spec.service] if hasattr(pb2, "DESCRIPTOR") else None
        )
        if service is None:
            from google.protobuf import descriptor_pool

            service = descriptor_pool.Default().FindServiceByName(spec.full_name)
        for method in service.methods:
            if carries_identities(method.input_type):
                cases.append((f"/{spec.full_name}/{method.name}", method, method.server_streaming))
    return cases


IDENTITY_RPCS = _identity_rpcs()


def test_identity_fields_are_the_known_names() -> None:
    # Guards the name-based rule: every RPC taking an identity is covered below.
    assert len(IDENTITY_RPCS) >= 15
    assert {"identity", "identities"} <= IDENTITY_FIELDS


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "two words",
        "a/b",
        "x" * 10_000,  # its error must still fit gRPC's 16 KiB trailers, ErrorInfo included
        "é" * 129,  # 258 UTF-8 bytes
        "a\x00b",
        "bell\x07",
        "esc\x1b[0m",
        "del\x7f",
        "zero\u200bwidth",
        "\ufeffbom",
        "nel\x85",
    ],
    ids=[
        "empty",
        "space",
        "slash",
        "10k",
        "258-bytes",
        "nul",
        "bel",
        "esc",
        "del",
        "zwsp",
        "bom",
        "nel",
    ],
)
async def test_invalid_identity_on_every_rpc(suite: Any, bad: str) -> None:
    from google.protobuf import message_factory

    _, channel, _ = suite
    for path, method, streaming in IDENTITY_RPCS:
        request = message_factory.GetMessageClass(method.input_type)()
        assert _poison(request, bad), path
        response_cls = message_factory.GetMessageClass(method.output_type)
        if streaming:
            call = channel.unary_stream(
                path,
                request_serializer=type(request).SerializeToString,
                response_deserializer=response_cls.FromString,
            )
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in call(request, timeout=5):
                    pass
        else:
            call = channel.unary_unary(
                path,
                request_serializer=type(request).SerializeToString,
                response_deserializer=response_cls.FromString,
            )
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(request, timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, path
        assert _reason(info.value) == "INVALID_IDENTITY", path


class _SlowTopology(topo_grpc.TopologyServiceServicer):
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def ComputeEdges(self, request: Any, context: Any) -> Any:
        self.started.set()
        await self.release.wait()  # in flight until the test has seen NOT_SERVING
        return topo_pb2.ComputeEdgesResponse(total_edges=7)


async def test_shutdown_drains_in_flight_call_and_reports_not_serving() -> None:
    slow = _SlowTopology()
    reg = ServiceRegistration(
        "mobkit.topology.v1.TopologyService",
        lambda server: topo_grpc.add_TopologyServiceServicer_to_server(slow, server),
        errors=common_errors(),
    )
    server, port = build_server(ServerConfig([reg], grace=5, drain_delay=0.3))
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = topo_grpc.TopologyServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=reg.name), timeout=10)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        in_flight = asyncio.ensure_future(
            stub.ComputeEdges(topo_pb2.ComputeEdgesRequest(target_identities=["a"]), timeout=10)
        )
        await asyncio.wait_for(slow.started.wait(), 5)
        stopping = asyncio.ensure_future(server.stop())
        # Health says NOT_SERVING while the call is still in flight, before the drain.
        status = await asyncio.wait_for(watch.read(), 5)
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        assert not in_flight.done()
        slow.release.set()
        reply = await asyncio.wait_for(in_flight, 10)
        assert reply.total_edges == 7
        await asyncio.wait_for(stopping, 10)
