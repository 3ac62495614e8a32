"""Prometheus metrics: RPCs by method and real status code, scraped over loopback from
the ``/metrics`` endpoint that ``--metrics-listen`` starts; domain gauges; etcd round trips."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from metrics_support import sample, scrape, value

from mobkit.core.errors import StaleFencingToken
from mobkit.etcd.process import free_ports
from mobkit.gen.topology.v1 import topology_service_pb2 as topo_pb
from mobkit.gen.topology.v1 import topology_service_pb2_grpc as topo_grpc
from mobkit.observability import metrics
from mobkit.server.app import ServerConfig, ServiceRegistration, build_server
from mobkit.server.config import load_settings
from mobkit.server.errors import common_errors
from mobkit.server.resources import Resources
from mobkit.server.wiring import secure_and_observe

TOPOLOGY = "mobkit.topology.v1.TopologyService"


class Topology(topo_grpc.TopologyServiceServicer):
    """ComputeEdges whose outcome is chosen by the first target identity."""

    async def ComputeEdges(self, request: Any, context: Any) -> Any:
        match request.target_identities[0]:
            case "stale":
                raise StaleFencingToken("stale", presented=1, current=2)
            case "abort":
                await context.abort(grpc.StatusCode.NOT_FOUND, "gone")
            case "boom":
                raise RuntimeError("unexpected")
        return topo_pb.ComputeEdgesResponse(total_edges=1)


def registration() -> ServiceRegistration:
    errors = {**common_errors(), StaleFencingToken: grpc.StatusCode.FAILED_PRECONDITION}
    return ServiceRegistration(
        TOPOLOGY,
        lambda s: topo_grpc.add_TopologyServiceServicer_to_server(Topology(), s),
        errors=errors,
    )


@pytest.fixture
async def served(etcd_session: Any, tmp_path: Any) -> AsyncIterator[tuple[Any, int, Resources]]:
    (metrics_port,) = free_ports(1)
    settings = load_settings(
        env={},
        overrides={
            "listen": "127.0.0.1:0",
            "metrics_listen": f"127.0.0.1:{metrics_port}",
            "etcd_endpoints": [etcd_session.endpoint],
        },
    )
    resources = Resources(settings)
    config = await secure_and_observe(ServerConfig([registration()], grace=0), settings, resources)
    server, port = build_server(config)
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield topo_grpc.TopologyServiceStub(channel), metrics_port, resources
    finally:
        await channel.close()
        await server.stop(0)
        await resources.close()


async def _compute(stub: Any, first: str) -> grpc.StatusCode:
    try:
        await stub.ComputeEdges(topo_pb.ComputeEdgesRequest(target_identities=[first]), timeout=5)
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


async def test_rpc_counter_by_method_and_code_is_scraped(served: Any) -> None:
    stub, port, _ = served
    labels = {"grpc_service": TOPOLOGY, "grpc_method": "ComputeEdges"}
    status, before = await scrape(port)
    assert status == "HTTP/1.0 200 OK"
    outcomes = {
        "planner": "OK",
        "stale": "FAILED_PRECONDITION",
        "abort": "NOT_FOUND",
        "boom": "INTERNAL",
    }
    for first, code in outcomes.items():
        assert (await _compute(stub, first)).name == code
    await _compute(stub, "planner")
    _, after = await scrape(port)
    for code, calls in {"OK": 2, "FAILED_PRECONDITION": 1, "NOT_FOUND": 1, "INTERNAL": 1}.items():
        name = "grpc_server_handled_total"
        was = sample(before, name, grpc_code=code, **labels)
        assert sample(after, name, grpc_code=code, **labels) - was == calls, code
    count = "grpc_server_handling_seconds_count"
    assert sample(after, count, **labels) - sample(before, count, **labels) == 5


async def test_etcd_round_trips_are_counted(served: Any) -> None:
    _, port, resources = served
    _, before = await scrape(port)
    client = await resources.etcd()
    for _ in range(3):
        await client.get(b"/metrics-test/nothing")
    _, after = await scrape(port)
    name = "mobkit_etcd_round_trips_total"
    assert sample(after, name) - sample(before, name) >= 3


async def test_census_is_read_from_the_tracked_orchestrators_at_scrape_time(
    served: Any,
) -> None:
    _, port, _ = served
    census = metrics.Census({"active": 3}, leases_held=3)
    untrack = metrics.track_census(lambda: census)
    try:
        _, body = await scrape(port)
        assert value(body, "mobkit_leases_held") == 3
        assert value(body, "mobkit_identities_by_state", state="active") == 3
        assert value(body, "mobkit_identities_by_state", state="broken") == 0  # every state
        census = metrics.Census({"dormant": 1}, leases_held=0)  # the next scrape sees it
        _, body = await scrape(port)
        assert value(body, "mobkit_identities_by_state", state="active") == 0
        assert value(body, "mobkit_identities_by_state", state="dormant") == 1
    finally:
        untrack()
    _, body = await scrape(port)
    assert value(body, "mobkit_leases_held") == 0
    status, _ = await scrape(port, "/nope")
    assert status.startswith("HTTP/1.0 404")


async def test_metrics_endpoint_closes_with_the_resources() -> None:
    endpoint = await metrics.start_metrics_server("127.0.0.1:0")
    port = endpoint.port
    status, _ = await scrape(port)
    assert status.endswith("200 OK")
    await endpoint.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
