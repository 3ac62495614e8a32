"""The suite as one real process on real etcd and SQLite: send, SIGKILL, restart, continue."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from mobkit.gen.orchestrator.v1 import orchestrator_pb2 as pb
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.testing.suite import (
    dispatch_request,
    reason,
    send_request,
    stub,
    suite_process,
    write_roster,
)

ACTIVE = pb.IDENTITY_LIFECYCLE_STATE_ACTIVE
TEAM = ["alice", "bob", "carol", "dave", "erin"]


async def wait_statuses(
    channel: grpc.aio.Channel, want: set[str], timeout: float = 20
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            reply = await stub(channel).ListIdentityStatuses(
                svc.ListIdentityStatusesRequest(), timeout=5
            )
            statuses = {s.identity: s for s in reply.statuses}
            if {i for i, s in statuses.items() if s.state == ACTIVE} == want:
                return statuses
        except grpc.aio.AioRpcError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"identities never became exactly {sorted(want)} active")
        await asyncio.sleep(0.1)


@pytest.fixture
def prefix() -> str:
    return f"/e2e-{uuid.uuid4().hex[:8]}"


async def test_send_kill_restart_resumes_same_session(
    tmp_path: Path, etcd_session: Any, prefix: str
) -> None:
    roster = write_roster(tmp_path / "roster.toml", TEAM, internal=["erin"])
    proc = suite_process(tmp_path, etcd_session.endpoint, roster, prefix=prefix)
    with proc:
        async with grpc.aio.insecure_channel(proc.address or "") as ch:
            before = await wait_statuses(ch, set(TEAM))
            first = await stub(ch).Send(
                send_request("alice", "remember the milk", key="k-1"), timeout=10
            )
            assert first.receipt.checkpoint_version == 1
            assert first.receipt.session_id == before["alice"].session_id
            assert "the milk" in first.receipt.output

        proc.kill()  # SIGKILL: no shutdown hook releases anything
        proc.start()
        async with grpc.aio.insecure_channel(proc.address or "") as ch:
            after = await wait_statuses(ch, set(TEAM))
            for identity in TEAM:
                assert after[identity].session_id == before[identity].session_id
            assert after["alice"].checkpoint_version == 1
            # The new owner's token is larger: the dead process's token is fenced out.
            assert after["alice"].lease.fencing_token > before["alice"].lease.fencing_token

            again = await stub(ch).Send(
                send_request("alice", "remember the milk", key="k-1"), timeout=10
            )
            assert again.receipt == first.receipt  # same key: the original receipt, no new turn

            recall = await stub(ch).Send(send_request("alice", "recall"), timeout=10)
            assert recall.receipt.checkpoint_version == 2
            assert recall.receipt.session_id == before["alice"].session_id
            assert "turn 2" in recall.receipt.output and "the milk" in recall.receipt.output


async def test_roster_edit_activates_and_retires_exactly_that(
    tmp_path: Path, etcd_session: Any, prefix: str
) -> None:
    roster = write_roster(tmp_path / "roster.toml", TEAM)
    with suite_process(tmp_path, etcd_session.endpoint, roster, prefix=prefix) as proc:
        async with grpc.aio.insecure_channel(proc.address or "") as ch:
            await wait_statuses(ch, set(TEAM))
            write_roster(roster, [*TEAM[1:], "frank"])  # remove alice, add frank
            statuses = await wait_statuses(ch, {*TEAM[1:], "frank"})
            assert "alice" not in statuses
            kinds: list[tuple[str, str]] = []
            for _ in range(100):  # events are appended in the background: bounded wait
                events = await stub(ch).ListEvents(
                    svc.ListEventsRequest(after_seq=0, page_size=1000)
                )
                kinds = [(e.kind, e.agent_identity) for e in events.events]
                if ("retired", "alice") in kinds and ("activated", "frank") in kinds:
                    break
                await asyncio.sleep(0.1)
            assert ("retired", "alice") in kinds and ("activated", "frank") in kinds
            assert sum(1 for k in kinds if k[0] == "activated") == len(TEAM) + 1


async def test_bad_input_gets_reasons_and_changes_nothing(
    tmp_path: Path, etcd_session: Any, prefix: str
) -> None:
    roster = write_roster(tmp_path / "roster.toml", TEAM, internal=["erin"])
    with suite_process(tmp_path, etcd_session.endpoint, roster, prefix=prefix) as proc:
        async with grpc.aio.insecure_channel(proc.address or "") as ch:
            before = await wait_statuses(ch, set(TEAM))
            o = stub(ch)
            cases = [
                (
                    o.Send(send_request("zed", "hi"), timeout=5),
                    grpc.StatusCode.NOT_FOUND,
                    "IDENTITY_NOT_FOUND",
                ),
                (
                    o.Send(send_request("not valid", "hi"), timeout=5),
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "INVALID_IDENTITY",
                ),
                (
                    o.Send(send_request("erin", "hi"), timeout=5),
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "NOT_ADDRESSABLE",
                ),
                (
                    o.ResumeIdentity(svc.ResumeIdentityRequest(identity="bob"), timeout=5),
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "INVALID_TRANSITION",
                ),
                (
                    o.ListEvents(svc.ListEventsRequest(after_seq=10**15), timeout=5),
                    grpc.StatusCode.OUT_OF_RANGE,
                    "STALE_EVENT_CURSOR",
                ),
                *(
                    (
                        o.ListIdentityStatuses(
                            svc.ListIdentityStatusesRequest(page_token=token), timeout=5
                        ),
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "INVALID_ARGUMENT",
                    )
                    # garbage, not base64, and base64 of something that is not a cursor
                    for token in ("garbage!", "%%%", "MTAw")
                ),
            ]
            for call, code, why in cases:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call
                assert info.value.code() == code, why
                assert reason(info.value) == why
            after = await wait_statuses(ch, set(TEAM))
            for identity in TEAM:
                assert after[identity].checkpoint_version == before[identity].checkpoint_version
            # Dispatch reaches the internal-only identity that Send refused.
            receipt = await o.Dispatch(dispatch_request("erin", "hello"), timeout=10)
            assert receipt.receipt.checkpoint_version == 1


async def test_a_corrupted_snapshot_chunk_leaves_the_identity_broken_snapshot_corrupted(
    tmp_path: Path, etcd_session: Any, prefix: str
) -> None:
    import sqlite3

    from mobkit.continuity.codec import CHUNKS
    from mobkit.gen.continuity.v1 import continuity_pb2

    roster = write_roster(tmp_path / "roster.toml", ["alice"])
    proc = suite_process(tmp_path, etcd_session.endpoint, roster, prefix=prefix)
    with proc:
        async with grpc.aio.insecure_channel(proc.address or "") as ch:
            await wait_statuses(ch, {"alice"})
            # A note large enough that the notebook's state is stored as chunks.
            note = "".join(f"line {i}: remember item {i * 7919 % 10007}\n" for i in range(2000))
            await stub(ch).Send(send_request("alice", note, key="big"), timeout=20)
        proc.kill()
        db = sqlite3.connect(tmp_path / "suite" / "continuity.sqlite3")
        try:
            key, value = db.execute(
                "SELECT key, value FROM continuity_kv WHERE key >= ? AND key < ? LIMIT 1",
                (CHUNKS, CHUNKS[:-1] + b"0"),
            ).fetchone()
            flipped = bytes([value[0] ^ 0xFF]) + bytes(value[1:])
            db.execute("UPDATE continuity_kv SET value = ? WHERE key = ?", (flipped, key))
            db.commit()
        finally:
            db.close()
        proc.start()
        async with grpc.aio.insecure_channel(proc.address or "") as ch:
            deadline = asyncio.get_running_loop().time() + 20
            while True:
                reply = await stub(ch).GetIdentityStatus(
                    svc.GetIdentityStatusRequest(identity="alice"), timeout=5
                )
                status = reply.status
                if status.state == pb.IDENTITY_LIFECYCLE_STATE_BROKEN:
                    break
                assert asyncio.get_running_loop().time() < deadline, f"never broken: {status}"
                await asyncio.sleep(0.1)
            kind = status.continuity_failure.kind
            assert kind == continuity_pb2.CONTINUITY_FAILURE_KIND_SNAPSHOT_CORRUPTED
            assert "SHA-256" in status.continuity_failure.detail
