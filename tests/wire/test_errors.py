"""``error_from_rpc``: domain errors raised behind a real gRPC server come back as
the same exception class with the same attributes, message and metadata."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from wire_support import serving_lease

from mobkit.core import errors as e
from mobkit.gen.lease.v1 import lease_service_pb2 as pb
from mobkit.gen.lease.v1 import lease_service_pb2_grpc as pb_grpc
from mobkit.server.errors import common_errors
from mobkit.wire.errors import RemoteError, error_from_rpc


class Mystery(e.MobKitError):
    reason = "SOMETHING_NEW"


class Raising(pb_grpc.LeaseServiceServicer):
    exc: BaseException = RuntimeError()

    async def ListLeases(self, request: Any, context: Any) -> Any:
        raise self.exc


@pytest_asyncio.fixture
async def raising() -> AsyncIterator[tuple[Raising, pb_grpc.LeaseServiceStub]]:
    servicer = Raising()
    table = {**common_errors(), e.MobKitError: grpc.StatusCode.FAILED_PRECONDITION}
    async with serving_lease(servicer, table) as stub:
        yield servicer, stub


async def round_trip(
    raising: tuple[Raising, pb_grpc.LeaseServiceStub],
    exc: BaseException,
    *specific: type[e.MobKitError],
) -> e.MobKitError:
    servicer, stub = raising
    servicer.exc = exc
    with pytest.raises(grpc.RpcError) as info:
        await stub.ListLeases(pb.ListLeasesRequest(), timeout=5)
    return error_from_rpc(info.value, *specific)


SAME = [
    e.InvalidIdentity("a b", "must not contain whitespace"),
    e.InvalidArgument("ttl", "too long"),
    e.BackendUnavailable("etcd", "connection refused"),
    e.BackendFull("etcdserver: mvcc: database space exceeded", backend="etcd"),
    e.BackendFull("database or disk is full", backend="sqlite"),
    e.StaleFencingToken("planner", 3, 5),
    e.StaleCheckpointVersion("planner", 7, 7),
    e.SnapshotTooLarge(2048, 1024),
    e.StoreCorruption("checksum mismatch", identity="planner"),
    e.NotActive("planner", "dormant", retry_after_ms=250),
    e.InvalidTransition("planner", "active", "uninitialized"),
    e.TopologyViolation("planner", "critic"),
    e.StaleEventCursor(10, 4),
    e.RosterInvalid("unknown profile", entry="planner", field="profile"),
    e.Unauthenticated("missing bearer token"),
]


@pytest.mark.parametrize("exc", SAME, ids=lambda x: type(x).__name__)
async def test_domain_errors_come_back_as_themselves(raising: Any, exc: e.MobKitError) -> None:
    mapped = await round_trip(raising, exc)
    assert type(mapped) is type(exc)
    assert vars(mapped) == vars(exc)
    assert str(mapped) == str(exc)


async def test_backend_full_is_resource_exhausted_with_its_backend(raising: Any) -> None:
    servicer, stub = raising
    servicer.exc = e.BackendFull("etcdserver: mvcc: database space exceeded", backend="etcd")
    with pytest.raises(grpc.RpcError) as info:
        await stub.ListLeases(pb.ListLeasesRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    mapped = error_from_rpc(info.value)
    assert isinstance(mapped, e.BackendFull) and not isinstance(mapped, e.BackendUnavailable)
    assert (mapped.reason, mapped.backend) == ("BACKEND_FULL", "etcd")


async def test_specific_classes_win_for_their_reason(raising: Any) -> None:
    exc = e.LeaseProviderUnavailable("etcd down", backend="etcd")
    generic = await round_trip(raising, exc)
    assert type(generic) is e.BackendUnavailable
    specific = await round_trip(raising, exc, e.LeaseProviderUnavailable)
    assert type(specific) is e.LeaseProviderUnavailable
    assert vars(specific) == vars(exc)
    mystery = await round_trip(raising, Mystery("new kind of failure"), Mystery)
    assert type(mystery) is Mystery and mystery.message == "new kind of failure"


async def test_unknown_reasons_and_plain_failures_are_remote_errors(raising: Any) -> None:
    unknown = await round_trip(raising, Mystery("what is this"))
    assert isinstance(unknown, RemoteError)
    assert (unknown.code, unknown.remote_reason) == ("FAILED_PRECONDITION", "SOMETHING_NEW")
    internal = await round_trip(raising, RuntimeError("secret detail"))
    assert isinstance(internal, RemoteError) and internal.code == "INTERNAL"
    assert "secret detail" not in internal.message


async def test_unreachable_server_is_backend_unavailable() -> None:
    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
        with pytest.raises(grpc.RpcError) as info:
            await pb_grpc.LeaseServiceStub(channel).ListLeases(pb.ListLeasesRequest(), timeout=5)
    assert type(error_from_rpc(info.value)) is e.BackendUnavailable
    assert type(error_from_rpc(info.value, e.LeaseProviderUnavailable)) is (
        e.LeaseProviderUnavailable
    )
