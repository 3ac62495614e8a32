"""Forwarding between replicas in a fleet that requires bearer tokens: a turn sent to a
replica that does not own its identity reaches the owner over the forward stream
with the replica's own call token, and the caller's scope still decides."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from mobkit.etcd.process import EtcdProcess
from mobkit.security.auth import bearer_token_interceptors, issue_token
from mobkit.testing.fleet import Fleet, all_statuses, wait_fleet
from mobkit.testing.suite import send_request, stub, write_roster

IDS = [f"t{i}" for i in range(6)]

pytestmark = pytest.mark.timeout(180)


async def test_a_forwarded_send_carries_the_replicas_token(
    tmp_path: Path, etcd_session: EtcdProcess
) -> None:
    tokens = tmp_path / "tokens.toml"
    writer = issue_token(tokens, "app", ["write"])
    viewer = issue_token(tokens, "dashboard", ["read"])
    (tmp_path / "suite.token").write_text(issue_token(tokens, "suite", ["admin"]))
    auth = ["--auth-tokens-file", str(tokens), "--call-token-file", str(tmp_path / "suite.token")]
    fleet = Fleet(tmp_path, etcd_session.endpoint, write_roster(tmp_path / "r.toml", IDS), 3.0)
    try:
        first = fleet.add("r0", extra=auth)
        fleet.add("r1", extra=auth)
        assert first.address is not None
        as_writer = bearer_token_interceptors(writer)
        async with grpc.aio.insecure_channel(first.address, interceptors=as_writer) as ch:
            await wait_fleet(ch, len(IDS), owners=2, timeout=90)
            owners = {s.identity: s.owner.split("~")[0] for s in await all_statuses(ch)}
            assert set(owners.values()) == {"r0", "r1"}  # some turns below are forwarded
            for identity in IDS:
                reply = await stub(ch).Send(send_request(identity, "hello"), timeout=30)
                assert reply.receipt.identity == identity
        as_viewer = bearer_token_interceptors(viewer)
        async with grpc.aio.insecure_channel(first.address, interceptors=as_viewer) as ch:
            forwarded = next(i for i, owner in owners.items() if owner == "r1")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub(ch).Send(send_request(forwarded, "hello"), timeout=30)
            assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    finally:
        fleet.close()
