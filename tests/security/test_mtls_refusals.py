"""Issue 8's refusal cases on a real mTLS + bearer-token server: each refused with
the right code, and nothing changed behind the refusal."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from security_support import Suite, error_reason

from mobkit.gen.lease.v1 import lease_service_pb2 as lease_pb
from mobkit.gen.lease.v1 import lease_service_pb2_grpc as lease_grpc
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as orch_pb
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2_grpc as orch_grpc
from mobkit.security.devca import make_dev_ca
from mobkit.security.tls import ClientTLS

ACQUIRE = lease_pb.AcquireLeasesRequest(identities=["planner"], runtime_instance="intruder")


async def _acquire(channel: grpc.aio.Channel, **kwargs: Any) -> Any:
    return await lease_grpc.LeaseServiceStub(channel).AcquireLeases(ACQUIRE, timeout=5, **kwargs)


def _unchanged(suite: Suite) -> None:
    assert suite.leases.held == {}
    assert "AcquireLeases" not in suite.leases.calls
    assert suite.orchestrator.resets == []


async def test_admin_client_with_certificate_and_token_gets_through(suite: Suite) -> None:
    # The control case: the refusals below are about credentials, not a broken setup.
    channel = suite.channel(suite.client_tls(), token=suite.tokens.admin)
    reply = await _acquire(channel)
    assert reply.results[0].acquired.identity == "planner"
    assert suite.leases.held == {"planner": "intruder"}


async def test_client_without_certificate_is_refused(suite: Suite) -> None:
    tls = ClientTLS(ca_file=suite.ca.ca_cert)  # trusts the server, presents nothing
    channel = suite.channel(tls, token=suite.tokens.admin)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _acquire(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    _unchanged(suite)


async def test_client_with_certificate_from_another_ca_is_refused(
    suite: Suite, tmp_path: Any
) -> None:
    other = make_dev_ca(tmp_path / "other-ca")
    tls = ClientTLS(
        ca_file=suite.ca.ca_cert, cert_file=other.client_cert, key_file=other.client_key
    )
    channel = suite.channel(tls, token=suite.tokens.admin)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _acquire(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    _unchanged(suite)


async def test_plaintext_client_is_refused(suite: Suite) -> None:
    channel = suite.channel(None, token=suite.tokens.admin)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _acquire(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    _unchanged(suite)


async def test_client_that_distrusts_the_server_ca_refuses_it(suite: Suite, tmp_path: Any) -> None:
    other = make_dev_ca(tmp_path / "other-ca")
    tls = ClientTLS(
        ca_file=other.ca_cert, cert_file=suite.ca.client_cert, key_file=suite.ca.client_key
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _acquire(suite.channel(tls, token=suite.tokens.admin))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    _unchanged(suite)


async def test_expired_token_is_unauthenticated(suite: Suite) -> None:
    channel = suite.channel(suite.client_tls(), token=suite.tokens.expired)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _acquire(channel)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(info.value) == "UNAUTHENTICATED"
    _unchanged(suite)


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer mbk_not-a-real-token"),),
        (("authorization", "Basic dXNlcjpwYXNz"),),
        (("authorization", "Bearer"),),
    ],
    ids=["missing", "unknown", "wrong-scheme", "empty"],
)
async def test_missing_unknown_or_malformed_token_is_unauthenticated(
    suite: Suite, metadata: tuple[tuple[str, str], ...]
) -> None:
    channel = suite.channel(suite.client_tls())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _acquire(channel, metadata=metadata)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(info.value) == "UNAUTHENTICATED"
    _unchanged(suite)


async def test_read_token_calling_a_write_rpc_is_permission_denied(suite: Suite) -> None:
    channel = suite.channel(suite.client_tls(), token=suite.tokens.read)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _acquire(channel)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(info.value) == "PERMISSION_DENIED"
    _unchanged(suite)
    # ...while the same token may read.
    listed = await lease_grpc.LeaseServiceStub(channel).ListLeases(
        lease_pb.ListLeasesRequest(), timeout=5
    )
    assert list(listed.leases) == []
    assert suite.leases.calls == ["ListLeases"]


async def test_write_token_calling_an_admin_rpc_is_permission_denied(suite: Suite) -> None:
    stub = orch_grpc.OrchestratorServiceStub(
        suite.channel(suite.client_tls(), token=suite.tokens.write)
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ResetIdentity(orch_pb.ResetIdentityRequest(identity="planner"), timeout=5)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(info.value) == "PERMISSION_DENIED"
    _unchanged(suite)
    admin = orch_grpc.OrchestratorServiceStub(
        suite.channel(suite.client_tls(), token=suite.tokens.admin)
    )
    await admin.ResetIdentity(orch_pb.ResetIdentityRequest(identity="planner"), timeout=5)
    assert suite.orchestrator.resets == ["planner"]


async def test_server_stream_without_token_is_unauthenticated(suite: Suite) -> None:
    stub = orch_grpc.OrchestratorServiceStub(suite.channel(suite.client_tls()))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub.WatchEvents(orch_pb.WatchEventsRequest(), timeout=5):
            pass
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(info.value) == "UNAUTHENTICATED"
    read = orch_grpc.OrchestratorServiceStub(
        suite.channel(suite.client_tls(), token=suite.tokens.read)
    )
    events = [e async for e in read.WatchEvents(orch_pb.WatchEventsRequest(), timeout=5)]
    assert len(events) == 1


async def test_authentication_comes_before_input_validation(suite: Suite) -> None:
    bad = lease_pb.AcquireLeasesRequest(identities=["not/valid"], runtime_instance="x")
    stub = lease_grpc.LeaseServiceStub(suite.channel(suite.client_tls()))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.AcquireLeases(bad, timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_health_needs_no_token_but_still_mtls(suite: Suite) -> None:
    health = health_pb2_grpc.HealthStub(suite.channel(suite.client_tls()))
    reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    bare = health_pb2_grpc.HealthStub(suite.channel(ClientTLS(ca_file=suite.ca.ca_cert)))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await bare.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
