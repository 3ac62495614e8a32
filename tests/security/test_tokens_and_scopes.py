"""The tokens file, scope rules, the scope table's completeness, and the standalone
interceptor for servers not built by the scaffold."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool
from security_support import RecordingLeases, RecordingOrchestrator, error_reason, registrations

from mobkit.core.errors import InvalidArgument, PermissionDenied, Unauthenticated
from mobkit.gen.lease.v1 import lease_service_pb2 as lease_pb
from mobkit.gen.lease.v1 import lease_service_pb2_grpc as lease_grpc
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as orch_pb
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2_grpc as orch_grpc
from mobkit.security.auth import (
    AuthInterceptor,
    Principal,
    TokenRegistry,
    bearer_metadata,
    issue_token,
    read_token_file,
    token_hash,
)
from mobkit.security.commands import parse_lifetime, run_token_create
from mobkit.security.scopes import REQUIRED_SCOPES, Scope, required_scope
from mobkit.security.tls import channel_for
from mobkit.server.app import ServerConfig, build_server
from mobkit.server.catalog import EVERY_SERVICE
from mobkit.server.config import load_settings
from mobkit.server.resources import Resources
from mobkit.server.wiring import secure_and_observe

ACQUIRE = "/mobkit.lease.v1.LeaseService/AcquireLeases"
LIST = "/mobkit.lease.v1.LeaseService/ListLeases"


def test_scope_table_names_every_rpc_of_every_service_and_nothing_else() -> None:
    for spec in EVERY_SERVICE:
        spec.grpc_module()  # registers the service descriptor
        service = descriptor_pool.Default().FindServiceByName(spec.full_name)
        assert set(REQUIRED_SCOPES[spec.full_name]) == {m.name for m in service.methods}
    assert set(REQUIRED_SCOPES) == {s.full_name for s in EVERY_SERVICE}


def test_scope_rules() -> None:
    assert required_scope(LIST) is Scope.READ
    assert required_scope(ACQUIRE) is Scope.WRITE
    assert (
        required_scope("/mobkit.orchestrator.v1.OrchestratorService/ResetIdentity") is Scope.ADMIN
    )
    assert (
        required_scope("/mobkit.continuity.v1.ContinuityStoreService/DeleteContinuityRecord")
        is Scope.ADMIN
    )
    assert required_scope("/mobkit.lease.v1.LeaseService/SomethingNew") is Scope.ADMIN
    assert required_scope("/grpc.health.v1.Health/Check") is None
    assert required_scope("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") is None
    admin = Principal("a", frozenset({Scope.ADMIN}))
    write = Principal("w", frozenset({Scope.WRITE}))
    read = Principal("r", frozenset({Scope.READ}))
    assert admin.allows(Scope.READ) and admin.allows(Scope.WRITE) and admin.allows(Scope.ADMIN)
    assert write.allows(Scope.READ) and write.allows(Scope.WRITE) and not write.allows(Scope.ADMIN)
    assert read.allows(Scope.READ) and not read.allows(Scope.WRITE)


def test_the_file_stores_hashes_never_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    token = issue_token(path, "ops", ["write", "read"])
    text = path.read_text()
    assert token not in text
    assert token_hash(token) in text
    assert path.stat().st_mode & 0o077 == 0
    registry = TokenRegistry.load(path)
    principal = registry.authenticate(bearer_metadata(token))
    assert principal.name == "ops" and principal.scopes == {Scope.READ, Scope.WRITE}


def test_json_file_and_expiry(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    soon = datetime(2030, 1, 1, tzinfo=UTC)
    token = issue_token(path, "ci", ["read"], expires_at=soon)
    data = json.loads(path.read_text())
    assert data["tokens"][token_hash(token)]["expires_at"].startswith("2030-01-01T00:00:00")
    before = TokenRegistry.load(path, clock=lambda: soon - timedelta(seconds=1))
    assert before.authenticate(bearer_metadata(token)).name == "ci"
    after = TokenRegistry.load(path, clock=lambda: soon)
    with pytest.raises(Unauthenticated) as info:
        after.authenticate(bearer_metadata(token))
    assert info.value.metadata["principal"] == "ci"
    assert token not in str(info.value) and token not in json.dumps(info.value.metadata)


def test_handwritten_toml_with_local_datetime_means_utc(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    digest = token_hash("mbk_handmade")
    path.write_text(
        f'[tokens.{digest}]\nname = "ops"\nscopes = ["admin"]\nexpires_at = 2031-05-01T12:00:00\n'
    )
    principal = TokenRegistry.load(path).authenticate(bearer_metadata("mbk_handmade"))
    assert principal.expires_at == datetime(2031, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "content",
    [
        "[tokens.nothex]\nname='x'\nscopes=['read']\n",
        f"[tokens.{'a' * 64}]\nname='x'\nscopes=['superuser']\n",
        f"[tokens.{'a' * 64}]\nscopes=['read']\n",
        f"[tokens.{'a' * 64}]\nname='x'\nscopes=[]\n",
        f"[tokens.{'a' * 64}]\nname='x'\nscopes=['read']\nexpires_at='soon'\n",
        "tokens = 3\n",
        "this is not toml",
    ],
)
def test_bad_token_files_are_refused_at_load(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(content)
    with pytest.raises(InvalidArgument) as info:
        TokenRegistry.load(path)
    assert info.value.field == "auth_tokens_file"


def test_authorize_raises_the_domain_errors(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    read = issue_token(path, "r", ["read"])
    registry = TokenRegistry.load(path)
    registry.authorize("/grpc.health.v1.Health/Check", ())
    registry.authorize(LIST, bearer_metadata(read))
    with pytest.raises(PermissionDenied) as denied:
        registry.authorize(ACQUIRE, bearer_metadata(read))
    assert denied.value.metadata == {"principal": "r", "required_scope": "write", "method": ACQUIRE}
    with pytest.raises(Unauthenticated):
        registry.authorize(LIST, ())
    with pytest.raises(Unauthenticated):
        registry.authorize(LIST, (("authorization", f"Token {read}"),))


def test_token_command_and_lifetimes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tokens.toml"
    args = argparse.Namespace(
        name="ci", scopes="read,write", tokens_file=str(path), expires_in="2h", runtime_instances=[]
    )
    assert run_token_create(args) == 0
    token = capsys.readouterr().out.strip()
    principal = TokenRegistry.load(path).authenticate(bearer_metadata(token))
    assert principal.expires_at is not None
    assert principal.expires_at - datetime.now(UTC) > timedelta(hours=1)
    assert parse_lifetime("90d") == timedelta(days=90)
    assert parse_lifetime("30m") == timedelta(minutes=30)
    with pytest.raises(InvalidArgument):
        parse_lifetime("soon")


def test_read_token_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("mbk_abc\n")
    assert read_token_file(path) == "mbk_abc"
    path.write_text("two tokens\n")
    with pytest.raises(InvalidArgument):
        read_token_file(path)


async def test_standalone_interceptor_refuses_before_the_handler(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    read = issue_token(path, "r", ["read"])
    leases = RecordingLeases()
    server = grpc.aio.server(interceptors=[AuthInterceptor(TokenRegistry.load(path))])
    lease_grpc.add_LeaseServiceServicer_to_server(leases, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = lease_grpc.LeaseServiceStub(channel)
            request = lease_pb.AcquireLeasesRequest(identities=["a"], runtime_instance="x")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.AcquireLeases(request, metadata=bearer_metadata(read), timeout=5)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert error_reason(info.value) == "PERMISSION_DENIED"
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.ListLeases(lease_pb.ListLeasesRequest(), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            await stub.ListLeases(
                lease_pb.ListLeasesRequest(), metadata=bearer_metadata(read), timeout=5
            )
        assert leases.calls == ["ListLeases"]
    finally:
        await server.stop(0)


async def test_in_suite_channel_sends_the_call_token_over_plaintext(tmp_path: Path) -> None:
    """``channel_for`` (orchestrator -> provider) presents ``call_token_file`` even
    without TLS, on unary and server-streaming calls alike."""
    tokens = tmp_path / "tokens.toml"
    token = issue_token(tokens, "orchestrator", ["write"])
    (tmp_path / "call-token").write_text(token + "\n")
    settings = load_settings(
        env={},
        overrides={
            "listen": "127.0.0.1:0",
            "auth_tokens_file": str(tokens),
            "call_token_file": str(tmp_path / "call-token"),
        },
    )
    resources = Resources(settings)
    leases, orchestrator = RecordingLeases(), RecordingOrchestrator()
    config = ServerConfig(registrations(leases, orchestrator), grace=0)
    server, port = build_server(await secure_and_observe(config, settings, resources))
    await server.start()
    try:
        async with channel_for(f"127.0.0.1:{port}", settings) as channel:
            stub = lease_grpc.LeaseServiceStub(channel)
            request = lease_pb.AcquireLeasesRequest(identities=["a"], runtime_instance="x")
            await stub.AcquireLeases(request, timeout=5)
            watch = orch_grpc.OrchestratorServiceStub(channel).WatchEvents
            assert len([e async for e in watch(orch_pb.WatchEventsRequest(), timeout=5)]) == 1
            with pytest.raises(grpc.aio.AioRpcError) as info:  # admin is beyond write
                await orch_grpc.OrchestratorServiceStub(channel).ResetIdentity(
                    orch_pb.ResetIdentityRequest(identity="a"), timeout=5
                )
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert leases.held == {"a": "x"}
    finally:
        await server.stop(0)
        await resources.close()
