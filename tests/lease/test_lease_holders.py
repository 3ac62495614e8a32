"""Renewal and release only by the holder (API.md "Lease holders").

A renew or release that says who is asking (``runtime_instance``) touches only the
grants that instance holds; with auth on, a token scoped to runtime instances acts only
as them. The holder-less form (Meerkat's SDK grants carry no holder) keeps working.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from lease_support import Backend

from mobkit.core.errors import InvalidArgument
from mobkit.core.types import Acquired, LeaseGrant, Lost, Renewed
from mobkit.etcd.process import EtcdProcess
from mobkit.gen.lease.v1 import lease_pb2
from mobkit.gen.lease.v1 import lease_service_pb2 as pb
from mobkit.gen.lease.v1 import lease_service_pb2_grpc as pb_grpc
from mobkit.lease.domain import LeaseProvider
from mobkit.security.auth import bearer_metadata, issue_token
from mobkit.testing.servers import running_services
from mobkit.testing.suite import reason as error_reason

TTL = timedelta(seconds=10)
A = "orch-a@127.0.0.1:7001"
B = "orch-b@127.0.0.1:7002"


async def _holders(provider: LeaseProvider) -> dict[str, tuple[str, int]]:
    leases, _ = await provider.list_leases(1000)
    return {lease.identity: (lease.holder, lease.fencing_token) for lease in leases}


async def _acquire(provider: LeaseProvider, identity: str, holder: str) -> LeaseGrant:
    (result,) = await provider.acquire_leases([identity], holder, TTL)
    assert isinstance(result, Acquired), result
    return result.grant


async def test_another_instance_can_neither_renew_nor_release(backend: Backend) -> None:
    leases = backend.provider
    grant = await _acquire(leases, "planner", A)
    before = await _holders(leases)

    (renewed,) = await leases.renew_leases([grant], B)
    assert renewed == Lost("planner")
    await leases.release_leases([grant], B)
    assert await _holders(leases) == before  # still A's, same token

    (mine,) = await leases.renew_leases([grant], A)
    assert isinstance(mine, Renewed) and mine.grant.fencing_token == grant.fencing_token
    (holderless,) = await leases.renew_leases([grant])  # the SDK's form
    assert isinstance(holderless, Renewed)

    await leases.release_leases([grant], A)
    assert "planner" not in await _holders(leases)


@pytest.mark.parametrize(
    "bad",
    ["orch\n@1", "orch\x00", " orch", "orch\u200b", "o" * 257],
    ids=["newline", "nul", "leading-space", "zwsp", "257-bytes"],
)
async def test_runtime_instance_bounds(backend: Backend, bad: str) -> None:
    leases = backend.provider
    grant = await _acquire(leases, "coder", A)
    before = await _holders(leases)
    calls = [
        leases.acquire_leases(["other"], bad, TTL),
        leases.renew_leases([grant], bad),
        leases.release_leases([grant], bad),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument) as info:
            await call
        assert info.value.field == "runtime_instance"
    assert await _holders(leases) == before


async def test_instance_scoped_tokens(
    tmp_path: Path, etcd_session: EtcdProcess, etcd_prefix: str
) -> None:
    """With auth on: a token scoped to instance B acts only as B, whatever the request
    says; an unscoped write token keeps the holder-less form."""
    tokens = tmp_path / "tokens.toml"
    token_a = issue_token(tokens, "orch-a", ["write"], runtime_instances=[A])
    token_b = issue_token(tokens, "orch-b", ["write"], runtime_instances=[B])
    sdk = issue_token(tokens, "sdk", ["write"])
    async with running_services(
        ["lease"],
        etcd_endpoints=[etcd_session.endpoint],
        etcd_prefix=etcd_prefix,
        auth_tokens_file=str(tokens),
    ) as (_, channel, _settings):
        stub = pb_grpc.LeaseServiceStub(channel)

        async def call(method: str, request: object, token: str) -> object:
            return await getattr(stub, method)(request, metadata=bearer_metadata(token), timeout=5)

        async def listed() -> list[tuple[str, str, int]]:
            reply = await call("ListLeases", pb.ListLeasesRequest(), sdk)
            return [(x.identity, x.holder, x.fencing_token) for x in reply.leases]  # type: ignore[attr-defined]

        # A's token acquires without naming itself: the token says who it is.
        reply = await call(
            "AcquireLeases", pb.AcquireLeasesRequest(identities=["planner"]), token_a
        )
        grant = reply.results[0].acquired  # type: ignore[attr-defined]
        assert grant.fencing_token > 0
        before = await listed()
        assert before == [("planner", A, grant.fencing_token)]

        # B's token, holder-less or naming B: A's grant is not B's to renew or release.
        for asker in ("", B):
            renew = pb.RenewLeasesRequest(grants=[grant], runtime_instance=asker)
            renewed = await call("RenewLeases", renew, token_b)
            assert renewed.results[0].WhichOneof("result") == "lost"  # type: ignore[attr-defined]
            await call(
                "ReleaseLeases",
                pb.ReleaseLeasesRequest(grants=[grant], runtime_instance=asker),
                token_b,
            )
        # B's token claiming to be A is refused outright, for every lease call.
        forged = [
            ("AcquireLeases", pb.AcquireLeasesRequest(identities=["x"], runtime_instance=A)),
            ("RenewLeases", pb.RenewLeasesRequest(grants=[grant], runtime_instance=A)),
            ("ReleaseLeases", pb.ReleaseLeasesRequest(grants=[grant], runtime_instance=A)),
        ]
        for method, request in forged:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(method, request, token_b)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, method
            assert error_reason(info.value) == "PERMISSION_DENIED"
        assert await listed() == before

        # The holder and an unscoped (SDK) token renew; the holder releases.
        renewed = await call("RenewLeases", pb.RenewLeasesRequest(grants=[grant]), token_a)
        assert renewed.results[0].WhichOneof("result") == "renewed"  # type: ignore[attr-defined]
        holderless = await call("RenewLeases", pb.RenewLeasesRequest(grants=[grant]), sdk)
        assert holderless.results[0].WhichOneof("result") == "renewed"  # type: ignore[attr-defined]
        await call(
            "ReleaseLeases",
            pb.ReleaseLeasesRequest(
                grants=[lease_pb2.LeaseGrant(identity="planner", fencing_token=grant.fencing_token)]
            ),
            token_a,
        )
        assert await listed() == []
