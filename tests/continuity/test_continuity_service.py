"""The continuity service as other-language clients see it: status codes and ErrorInfo
per API.md, garbage on the wire, gRPC health, and how ``build`` picks a backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from mobkit.continuity.client import RESOLVE_BATCH, GrpcContinuityStore
from mobkit.continuity.etcd_backend import EtcdContinuityStore
from mobkit.continuity.memory import MemoryContinuityStore
from mobkit.continuity.service import open_store
from mobkit.continuity.sqlite_backend import SqliteContinuityStore
from mobkit.core.errors import InvalidArgument
from mobkit.core.identity import AgentIdentity, AgentRuntimeId, SessionId
from mobkit.core.types import ContinuityRecord, Ready, Uninitialized
from mobkit.etcd.process import EtcdProcess
from mobkit.gen.continuity.v1 import continuity_pb2 as pb
from mobkit.gen.continuity.v1 import continuity_service_pb2 as svc
from mobkit.gen.continuity.v1 import continuity_service_pb2_grpc as svc_grpc
from mobkit.server.config import Settings
from mobkit.server.host import start_services
from mobkit.server.resources import Resources

pytestmark = pytest.mark.timeout(60)

SERVICE = "mobkit.continuity.v1.ContinuityStoreService"
StatusCode = grpc.StatusCode


@pytest_asyncio.fixture
async def channel(tmp_path: Path) -> AsyncIterator[grpc.aio.Channel]:
    settings = Settings(
        listen="127.0.0.1:0",
        continuity_backend="sqlite",
        sqlite_path=str(tmp_path / "c.sqlite3"),
        snapshot_limit_bytes=1024,
        grace=0.0,
    )
    resources = Resources(settings)
    server, _ = await start_services(["continuity"], settings, resources)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch
    await server.stop(0)
    await resources.close()


async def failure(call: Any) -> tuple[StatusCode, error_details_pb2.ErrorInfo]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    status = rpc_status.from_call(info.value)
    assert status is not None
    [detail] = status.details  # exactly one ErrorInfo
    error = error_details_pb2.ErrorInfo()
    assert detail.Unpack(error)
    assert error.domain == "mobkit.dev"
    return info.value.code(), error


def rec(**kw: Any) -> pb.ContinuityRecord:
    fields = {"identity": "planner", "agent_runtime_id": "rt", "session_id": "s-1"} | kw
    return pb.ContinuityRecord(**fields)


def save(version: int, token: int, data: bytes = b"x", **kw: Any) -> svc.SaveSessionSnapshotRequest:
    fields = {
        "identity": "planner",
        "session_id": "s-1",
        "generation": 0,
        "checkpoint_version": version,
        "fencing_token": token,
        "snapshot": pb.SessionSnapshot(data=data),
    } | kw
    return svc.SaveSessionSnapshotRequest(**fields)


async def test_every_error_has_its_api_code_reason_and_metadata(channel: grpc.aio.Channel) -> None:
    stub = svc_grpc.ContinuityStoreServiceStub(channel)
    await stub.UpsertContinuityRecord(
        svc.UpsertContinuityRecordRequest(record=rec(), fencing_token=9)
    )
    await stub.SaveSessionSnapshot(save(3, 9))
    cases: list[tuple[Any, StatusCode, str, dict[str, str]]] = [
        (
            stub.SaveSessionSnapshot(save(4, 8)),
            StatusCode.FAILED_PRECONDITION,
            "STALE_FENCING_TOKEN",
            {"identity": "planner", "presented": "8", "current": "9"},
        ),
        (
            stub.SaveSessionSnapshot(save(3, 9, b"y")),
            StatusCode.FAILED_PRECONDITION,
            "STALE_CHECKPOINT_VERSION",
            {"identity": "planner", "presented": "3", "current": "3"},
        ),
        (
            stub.SaveSessionSnapshot(save(4, 9, generation=1)),
            StatusCode.FAILED_PRECONDITION,
            "GENERATION_MISMATCH",
            {"identity": "planner", "presented": "1", "current": "0"},
        ),
        (
            stub.DeleteContinuityRecord(
                svc.DeleteContinuityRecordRequest(identity="ghost", fencing_token=1)
            ),
            StatusCode.NOT_FOUND,
            "CONTINUITY_RECORD_NOT_FOUND",
            {"identity": "ghost"},
        ),
        (
            stub.SaveSessionSnapshot(save(4, 9, b"z" * 1025)),
            StatusCode.RESOURCE_EXHAUSTED,
            "SNAPSHOT_TOO_LARGE",
            {"size": "1025", "limit": "1024"},
        ),
        (
            stub.ResolveMany(svc.ResolveManyRequest(identities=["ok", "bad id"])),
            StatusCode.INVALID_ARGUMENT,
            "INVALID_IDENTITY",
            {"identity": "bad id"},
        ),
        (
            stub.ResolveMany(svc.ResolveManyRequest(identities=["a", "a"])),
            StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            {"field": "identities"},
        ),
        (
            stub.UpsertContinuityRecord(
                svc.UpsertContinuityRecordRequest(record=rec(), fencing_token=0)
            ),
            StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            {"field": "fencing_token"},
        ),
        (
            stub.UpsertContinuityRecord(svc.UpsertContinuityRecordRequest(fencing_token=9)),
            StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            {"field": "record"},
        ),
        (
            stub.SaveSessionSnapshot(save(4, 9, snapshot=None)),
            StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            {"field": "snapshot"},
        ),
        (
            stub.LoadSessionSnapshot(svc.LoadSessionSnapshotRequest()),
            StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            {"field": "session_id"},
        ),
        (
            stub.GetContinuityHealth(svc.GetContinuityHealthRequest(identity="")),
            StatusCode.INVALID_ARGUMENT,
            "INVALID_IDENTITY",
            {"identity": ""},
        ),
    ]
    for call, code, reason, metadata in cases:
        got_code, info = await failure(call)
        assert (got_code, info.reason) == (code, reason)
        assert metadata.items() <= dict(info.metadata).items(), (reason, info.metadata)
    reply = await stub.LoadSessionSnapshot(svc.LoadSessionSnapshotRequest(session_id="s-1"))
    assert (reply.checkpoint_version, reply.snapshot.data) == (3, b"x")


async def test_corruption_is_data_loss(channel: grpc.aio.Channel, tmp_path: Path) -> None:
    import sqlite3

    stub = svc_grpc.ContinuityStoreServiceStub(channel)
    await stub.UpsertContinuityRecord(
        svc.UpsertContinuityRecordRequest(record=rec(), fencing_token=1)
    )
    await stub.SaveSessionSnapshot(save(1, 1, b"data"))
    with sqlite3.connect(tmp_path / "c.sqlite3", isolation_level=None) as conn:
        conn.execute(
            "UPDATE continuity_kv SET value = substr(value, 1, length(value) - 1) || X'00' "
            "WHERE key = ?",
            (b"snapshots/planner/s-1",),
        )
    code, info = await failure(
        stub.LoadSessionSnapshot(svc.LoadSessionSnapshotRequest(session_id="s-1"))
    )
    assert (code, info.reason) == (StatusCode.DATA_LOSS, "STORE_CORRUPTION")
    reply = await stub.ResolveMany(svc.ResolveManyRequest(identities=["planner"]))
    broken = reply.entries[0].state.broken.failure
    assert broken.kind == pb.CONTINUITY_FAILURE_KIND_SNAPSHOT_CORRUPTED
    assert broken.record.checkpoint_version == 1


async def test_garbage_on_the_wire_is_refused_and_the_server_carries_on(
    channel: grpc.aio.Channel,
) -> None:
    stub = svc_grpc.ContinuityStoreServiceStub(channel)
    await stub.UpsertContinuityRecord(
        svc.UpsertContinuityRecordRequest(record=rec(), fencing_token=1)
    )
    raw = channel.unary_unary(f"/{SERVICE}/SaveSessionSnapshot")
    for garbage in (b"\xff\xff\xff\xff", b"\x0a\xff\x01", bytes(range(256))):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await raw(garbage)
        # grpc.aio decodes before any interceptor runs and answers UNKNOWN itself.
        assert info.value.code() in (StatusCode.UNKNOWN, StatusCode.INVALID_ARGUMENT)
    reply = await stub.ResolveMany(svc.ResolveManyRequest(identities=["planner"]))
    assert reply.entries[0].state.ready.record.checkpoint_version == 0
    health = health_pb2_grpc.HealthStub(channel)
    answer = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_health_rpc_reports_policy_and_checkpoint(channel: grpc.aio.Channel) -> None:
    stub = svc_grpc.ContinuityStoreServiceStub(channel)
    reply = await stub.GetContinuityHealth(svc.GetContinuityHealthRequest())
    assert reply.health.store_reachable
    assert reply.health.durability_policy.WhichOneof("policy") == "sync_write_through"
    assert not reply.health.HasField("last_checkpoint_version")
    await stub.UpsertContinuityRecord(
        svc.UpsertContinuityRecordRequest(record=rec(checkpoint_version=0), fencing_token=1)
    )
    reply = await stub.GetContinuityHealth(svc.GetContinuityHealthRequest(identity="planner"))
    assert reply.health.HasField("last_checkpoint_version")
    assert reply.health.last_checkpoint_version == 0


async def test_client_splits_large_resolves(channel: grpc.aio.Channel) -> None:
    store = GrpcContinuityStore(channel)
    ids = [f"agent-{i:05d}" for i in range(RESOLVE_BATCH + 1000)]
    await store.upsert_continuity_record(
        ContinuityRecord(AgentIdentity(ids[-1]), AgentRuntimeId("rt"), SessionId("s-last"), 0, 0), 1
    )
    entries = await store.resolve_many(ids)
    assert [i for i, _ in entries] == ids
    assert isinstance(entries[-1][1], Ready) and isinstance(entries[0][1], Uninitialized)
    with pytest.raises(InvalidArgument):
        await store.resolve_many([*ids, ids[0]])


# -- build -------------------------------------------------------------------------------------


async def test_build_picks_the_configured_backend(
    tmp_path: Path, etcd_session: EtcdProcess
) -> None:
    cases = [
        (Settings(continuity_backend="memory"), MemoryContinuityStore),
        (
            Settings(continuity_backend="sqlite", data_dir=str(tmp_path / "d")),
            SqliteContinuityStore,
        ),
        (
            Settings(
                continuity_backend="etcd",
                etcd_endpoints=[etcd_session.endpoint],
                etcd_prefix="/svc-test",
                sections={"continuity": {"lease_fence": False, "max_txn_ops": 64}},
            ),
            EtcdContinuityStore,
        ),
    ]
    for settings, kind in cases:
        resources = Resources(settings)
        store = await open_store(settings, resources)
        try:
            assert isinstance(store, kind)
            assert (await store.health()).store_reachable
        finally:
            await store.close()
            await resources.close()
    assert (tmp_path / "d" / "continuity.sqlite3").exists()  # resolved_sqlite_path()
    etcd_store = await open_store(cases[2][0], Resources(cases[2][0]))
    assert isinstance(etcd_store, EtcdContinuityStore)
    assert not etcd_store.lease_fence and etcd_store.max_txn_ops == 64
    await etcd_store.client.close()


async def test_unknown_options_are_refused() -> None:
    settings = Settings(continuity_backend="memory", sections={"continuity": {"chunking": True}})
    with pytest.raises(InvalidArgument):
        await open_store(settings, Resources(settings))


async def test_build_publishes_the_in_process_provider(tmp_path: Path) -> None:
    from mobkit.continuity.service import build

    settings = Settings(continuity_backend="memory")
    resources = Resources(settings)
    registration = await build(settings, resources)
    assert registration.name == SERVICE
    assert isinstance(resources.providers["continuity"], MemoryContinuityStore)
    await resources.close()
