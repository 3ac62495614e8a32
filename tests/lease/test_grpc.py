"""The LeaseService on the wire: status codes, exactly one ErrorInfo, the client
adapter's exceptions, server defaults, and ``mobkit serve lease`` as a process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mobkit.core.errors import LeaseProviderUnavailable
from mobkit.core.types import Acquired
from mobkit.etcd.process import EtcdProcess
from mobkit.gen.lease.v1 import lease_pb2
from mobkit.gen.lease.v1 import lease_service_pb2 as pb
from mobkit.gen.lease.v1 import lease_service_pb2_grpc as pb_grpc
from mobkit.lease.client import GrpcLeaseProvider
from mobkit.lease.domain import LeaseProvider
from mobkit.lease.etcd_backend import EtcdLeaseProvider
from mobkit.server.config import load_settings
from mobkit.server.host import start_services
from mobkit.testing.processes import ServeProcess
from mobkit.testing.servers import running_services

A = "orch-a@127.0.0.1:7001"


def duration(seconds: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(timedelta(seconds=seconds))
    return out


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)
    assert status is not None
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
    assert len(infos) == 1 and infos[0].domain == "mobkit.dev"
    return infos[0]


@pytest_asyncio.fixture
async def lease_service(
    etcd_session: EtcdProcess, etcd_prefix: str
) -> AsyncIterator[pb_grpc.LeaseServiceStub]:
    async with running_services(
        ["lease"], etcd_endpoints=[etcd_session.endpoint], etcd_prefix=etcd_prefix, lease_ttl=3.0
    ) as (_, channel, _settings):
        yield pb_grpc.LeaseServiceStub(channel)


async def listed(stub: pb_grpc.LeaseServiceStub) -> list[str]:
    reply = await stub.ListLeases(pb.ListLeasesRequest(page_size=1000), timeout=5)
    return [lease.identity for lease in reply.leases]


BAD_REQUESTS: list[Any] = [
    pytest.param(
        "AcquireLeases",
        pb.AcquireLeasesRequest(identities=["ok", "bad id"], runtime_instance=A),
        "INVALID_IDENTITY",
        {"identity": "bad id"},
        id="acquire-invalid-identity",
    ),
    pytest.param(
        "AcquireLeases",
        pb.AcquireLeasesRequest(identities=["ok", "x", "x"], runtime_instance=A),
        "INVALID_ARGUMENT",
        {"field": "identities"},
        id="acquire-duplicates",
    ),
    pytest.param(
        "AcquireLeases",
        pb.AcquireLeasesRequest(identities=["ok"], runtime_instance=A, ttl=duration(0)),
        "INVALID_ARGUMENT",
        {"field": "ttl"},
        id="acquire-zero-ttl",
    ),
    pytest.param(
        "AcquireLeases",
        pb.AcquireLeasesRequest(identities=["ok"], runtime_instance=A, ttl=duration(-1)),
        "INVALID_ARGUMENT",
        {"field": "ttl"},
        id="acquire-negative-ttl",
    ),
    pytest.param(
        "AcquireLeases",
        pb.AcquireLeasesRequest(identities=["ok"], runtime_instance=A, ttl=duration(7200)),
        "INVALID_ARGUMENT",
        {"field": "ttl"},
        id="acquire-ttl-too-long",
    ),
    pytest.param(
        "AcquireLeases",
        pb.AcquireLeasesRequest(identities=["ok"], runtime_instance=""),
        "INVALID_ARGUMENT",
        {"field": "runtime_instance"},
        id="acquire-no-instance",
    ),
    pytest.param(
        "RenewLeases",
        pb.RenewLeasesRequest(grants=[lease_pb2.LeaseGrant(identity="a/b", fencing_token=1)]),
        "INVALID_IDENTITY",
        {"identity": "a/b"},
        id="renew-invalid-identity",
    ),
    pytest.param(
        "RenewLeases",
        pb.RenewLeasesRequest(grants=[lease_pb2.LeaseGrant(identity="held", fencing_token=1)] * 2),
        "INVALID_ARGUMENT",
        {"field": "grants"},
        id="renew-duplicates",
    ),
    pytest.param(
        "ReleaseLeases",
        pb.ReleaseLeasesRequest(grants=[lease_pb2.LeaseGrant(identity="held", fencing_token=0)]),
        "INVALID_ARGUMENT",
        {"field": "fencing_token"},
        id="release-zero-token",
    ),
    pytest.param(
        "ReleaseLeases",
        pb.ReleaseLeasesRequest(grants=[lease_pb2.LeaseGrant(identity="", fencing_token=1)]),
        "INVALID_IDENTITY",
        {"identity": ""},
        id="release-empty-identity",
    ),
    pytest.param(
        "ListLeases",
        pb.ListLeasesRequest(page_size=-1),
        "INVALID_ARGUMENT",
        {"field": "page_size"},
        id="list-negative-page-size",
    ),
    pytest.param(
        "ListLeases",
        pb.ListLeasesRequest(page_token="garbage!"),
        "INVALID_ARGUMENT",
        {"field": "page_token"},
        id="list-bad-token",
    ),
]


@pytest.mark.parametrize(("method", "request_msg", "reason", "metadata"), BAD_REQUESTS)
async def test_bad_input_is_invalid_argument_and_changes_nothing(
    lease_service: pb_grpc.LeaseServiceStub,
    method: str,
    request_msg: Any,
    reason: str,
    metadata: dict[str, str],
) -> None:
    held = await lease_service.AcquireLeases(
        pb.AcquireLeasesRequest(identities=["held"], runtime_instance="other"), timeout=5
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await getattr(lease_service, method)(request_msg, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    detail = error_info(info.value)
    assert detail.reason == reason
    assert metadata.items() <= dict(detail.metadata).items()
    assert await listed(lease_service) == ["held"]
    renewed = await lease_service.RenewLeases(
        pb.RenewLeasesRequest(grants=[held.results[0].acquired]), timeout=5
    )
    assert renewed.results[0].WhichOneof("result") == "renewed"


async def test_unset_ttl_means_the_server_default(lease_service: pb_grpc.LeaseServiceStub) -> None:
    reply = await lease_service.AcquireLeases(
        pb.AcquireLeasesRequest(identities=["d"], runtime_instance=A), timeout=5
    )
    assert reply.results[0].acquired.ttl.ToTimedelta() == timedelta(seconds=3)
    explicit = await lease_service.AcquireLeases(
        pb.AcquireLeasesRequest(identities=["e"], runtime_instance=A, ttl=duration(20)), timeout=5
    )
    assert explicit.results[0].acquired.ttl.ToTimedelta() == timedelta(seconds=20)


async def test_etcd_down_is_unavailable_backend_unavailable(etcd: EtcdProcess) -> None:
    async with running_services(["lease"], etcd_endpoints=[etcd.endpoint], etcd_prefix="/down") as (
        _,
        channel,
        _settings,
    ):
        stub = pb_grpc.LeaseServiceStub(channel)
        await stub.AcquireLeases(pb.AcquireLeasesRequest(identities=["x"], runtime_instance=A))
        etcd.kill()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.AcquireLeases(
                pb.AcquireLeasesRequest(identities=["y"], runtime_instance=A), timeout=20
            )
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_info(info.value).reason == "BACKEND_UNAVAILABLE"
        with pytest.raises(LeaseProviderUnavailable) as adapter:
            await GrpcLeaseProvider(channel, timeout=20).list_leases()
        assert adapter.value.reason == "BACKEND_UNAVAILABLE"


async def test_lease_server_down_is_unavailable_in_the_adapter() -> None:
    channel = grpc.aio.insecure_channel("127.0.0.1:1")  # nothing listens there
    try:
        with pytest.raises(LeaseProviderUnavailable):
            await GrpcLeaseProvider(channel, timeout=5).renew_leases([])
    finally:
        await channel.close()


async def test_build_publishes_the_in_process_provider(
    etcd_session: EtcdProcess, etcd_prefix: str
) -> None:
    settings = load_settings(
        env={},
        overrides={
            "listen": "127.0.0.1:0",
            "etcd_endpoints": [etcd_session.endpoint],
            "etcd_prefix": etcd_prefix,
        },
    )
    server, resources = await start_services(["lease"], settings)
    try:
        provider = resources.providers["lease"]
        assert isinstance(provider, EtcdLeaseProvider) and isinstance(provider, LeaseProvider)
        [result] = await provider.acquire_leases(["in-process"], A, timedelta(seconds=5))
        assert isinstance(result, Acquired)
        # The gRPC service serves the same state.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            leases, _ = await GrpcLeaseProvider(channel).list_leases()
        assert [(lease.identity, lease.holder) for lease in leases] == [("in-process", A)]
    finally:
        await server.stop(0)
        await resources.close()


def test_mobkit_serve_lease_runs_in_its_own_process(
    etcd_session: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    args = ["--etcd-endpoints", etcd_session.endpoint, "--etcd-prefix", etcd_prefix]
    with ServeProcess("lease", args, log_dir=tmp_path) as proc:
        assert proc.address is not None
        with grpc.insecure_channel(proc.address) as channel:
            stub = pb_grpc.LeaseServiceStub(channel)
            reply = stub.AcquireLeases(
                pb.AcquireLeasesRequest(identities=["p"], runtime_instance=A), timeout=10
            )
            assert reply.results[0].acquired.fencing_token > 0
