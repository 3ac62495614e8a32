"""Idempotency keys kept for a time, not for a number of turns (issue 14).

A turn's receipt is stored beside its checkpoint, in the same atomic write, and the
continuity store keeps it for ``--idempotency-retention`` seconds however many turns
follow, across restarts and failovers. Real ``mobkit serve all`` processes on a real
etcd; SIGKILL for crashes; every wait is a poll with a deadline, no timing asserts.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from mobkit.gen.orchestrator.v1 import orchestrator_pb2 as pb
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.testing.fleet import ACTIVE, wait_fleet
from mobkit.testing.processes import ServeProcess
from mobkit.testing.suite import send_request, stub, suite_process, write_roster

pytestmark = pytest.mark.timeout(240)

LATER_TURNS = 1000
CALL_TIMEOUT = 15.0


# -- helpers ----------------------------------------------------------------------------


async def send(
    channel: grpc.aio.Channel, identity: str, text: str, key: str | None = None
) -> pb.DispatchReceipt:
    reply = await stub(channel).Send(send_request(identity, text, key=key), timeout=CALL_TIMEOUT)
    return reply.receipt


async def status_of(channel: grpc.aio.Channel, identity: str) -> Any:
    reply = await stub(channel).GetIdentityStatus(
        svc.GetIdentityStatusRequest(identity=identity), timeout=CALL_TIMEOUT
    )
    return reply.status


async def wait_active(
    channel: grpc.aio.Channel, identity: str, *, owner: str | None = None, timeout: float = 60
) -> Any:
    """Until ``identity`` is Active (on the replica named ``owner``, if given)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        try:
            last = await status_of(channel, identity)
            if last.state == ACTIVE and (
                owner is None or (last.HasField("owner") and last.owner.startswith(owner + "~"))
            ):
                return last
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{identity} never became Active (owner {owner}): last status {last}")


async def wait_past(acked_at: float, seconds: float) -> None:
    """Sleep until ``seconds`` have passed since the loop time ``acked_at``."""
    await asyncio.sleep(max(0.0, acked_at + seconds - asyncio.get_running_loop().time()))


def sqlite_replica(
    tmp: Path,
    etcd: Any,
    identities: list[str],
    *,
    profile: str = "notebook",
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> ServeProcess:
    """One ``mobkit serve all`` on the SQLite backend; a restart keeps its data dir."""
    roster = write_roster(tmp / "roster.toml", identities, profile=profile)
    proc = suite_process(
        tmp,
        etcd.endpoint,
        roster,
        prefix=f"/idem-{uuid.uuid4().hex[:8]}",
        extra=["--reconcile-interval", "5", *(extra or [])],
    )
    proc.env.update(env or {})
    return proc


async def thousand_later_turns(
    channel: grpc.aio.Channel, identity: str
) -> tuple[pb.DispatchReceipt, dict[str, pb.DispatchReceipt]]:
    """A first keyed note, then LATER_TURNS more turns, each with its own key (and its own
    note, so the state and the output grow). Returns the first receipt and every receipt
    by key."""
    first = await send(channel, identity, "remember the first note", key="first")
    assert first.checkpoint_version == 1, first
    assert not first.output_truncated
    assert "the first note" in first.output
    receipts = {"first": first}
    for i in range(1, LATER_TURNS + 1):
        key = f"later-{i:04d}"
        receipts[key] = await send(channel, identity, f"remember n{i:04d}", key=key)
        assert receipts[key].checkpoint_version == i + 1, receipts[key]
    last = receipts[f"later-{LATER_TURNS:04d}"]
    # The reply names the count and the newest notes (recall lists them all).
    assert f"{LATER_TURNS + 1} notes" in last.output and f"n{LATER_TURNS:04d}" in last.output
    return first, receipts


async def assert_replayed(
    channel: grpc.aio.Channel,
    identity: str,
    receipts: dict[str, pb.DispatchReceipt],
    keys: list[str],
    version: int,
) -> None:
    """Each key answers its original receipt (the same message, as a client retry
    would send it) and no turn runs: the checkpoint version stays ``version``."""
    for key in keys:
        original = receipts[key]
        text = "remember the first note" if key == "first" else f"remember n{key[-4:]}"
        again = await send(channel, identity, text, key=key)
        assert again == original, (key, again, original)
    status = await status_of(channel, identity)
    assert status.checkpoint_version == version, (status.checkpoint_version, version)


# -- 1 + 2: 1,000 later keyed turns, then a crash ------------------------------------


async def test_key_outlives_1000_turns_and_a_sigkill_failover_on_etcd(make_fleet: Any) -> None:
    """Two replicas, continuity on etcd. A key replayed after 1,000 later keyed turns
    returns its original receipt and runs no turn, through the owner and through the
    other replica; after the owner is SIGKILLed and the survivor owns the identity, the
    first key, a middle key and the last key still do."""
    ids = [f"idem-{i}" for i in range(4)]
    fleet = make_fleet(ids, ttl=2.0)
    a, b = fleet.add("r0"), fleet.add("r1")
    ca, cb = grpc.aio.insecure_channel(a.address), grpc.aio.insecure_channel(b.address)
    try:
        await wait_fleet(ca, len(ids), owners=2, timeout=60)
        statuses = {i: await status_of(ca, i) for i in ids}
        target = next(i for i, s in statuses.items() if s.owner.startswith("r0~"))

        first, receipts = await thousand_later_turns(ca, target)
        version = LATER_TURNS + 1
        await assert_replayed(ca, target, receipts, ["first", "later-0500"], version)
        await assert_replayed(cb, target, receipts, ["first"], version)  # forwarded

        before = await status_of(cb, target)
        a.kill()  # SIGKILL the owner: the survivor resumes it from the store
        after = await wait_active(cb, target, owner="r1", timeout=fleet.ttl + 40)
        assert after.checkpoint_version == version
        assert after.session_id == before.session_id
        assert after.lease.fencing_token > before.lease.fencing_token

        keys = ["first", "later-0500", f"later-{LATER_TURNS:04d}"]
        await assert_replayed(cb, target, receipts, keys, version)
        # The replayed receipt is the original one, under the dead owner's token.
        again = await send(cb, target, "remember the first note", key="first")
        assert again.fencing_token == first.fencing_token < after.lease.fencing_token

        # A new key runs a turn under the new owner, on top of all that state.
        fresh = await send(cb, target, "recall", key="after-failover")
        assert fresh.checkpoint_version == version + 1
        assert "the first note" in fresh.output and f"n{LATER_TURNS:04d}" in fresh.output
        assert fresh.fencing_token == after.lease.fencing_token
    finally:
        await ca.close()
        await cb.close()


async def test_key_outlives_1000_turns_and_a_sigkill_restart_on_sqlite(
    tmp_path: Path, etcd_session: Any
) -> None:
    """One replica on SQLite: the failover equivalent is a SIGKILL and a restart on the
    same data dir. A key replayed after 1,000 later keyed turns, before and after the
    restart, returns its original receipt and runs no turn. After a ResetIdentity the
    old generation's receipt is not replayed: the new session runs the turn."""
    identity = "idem-sqlite"
    proc = sqlite_replica(tmp_path, etcd_session, [identity])
    with proc:
        async with grpc.aio.insecure_channel(proc.address or "") as ch:
            await wait_active(ch, identity)
            first, receipts = await thousand_later_turns(ch, identity)
            version = LATER_TURNS + 1
            await assert_replayed(ch, identity, receipts, ["first", "later-0500"], version)
            before = await status_of(ch, identity)

        proc.kill()  # SIGKILL: nothing is flushed or released on the way out
        proc.start(timeout=90)
        async with grpc.aio.insecure_channel(proc.address or "") as ch:
            after = await wait_active(ch, identity, timeout=60)
            assert after.checkpoint_version == version
            assert after.session_id == before.session_id
            keys = ["first", "later-0500", f"later-{LATER_TURNS:04d}"]
            await assert_replayed(ch, identity, receipts, keys, version)

            # A reset starts a new generation: a key from the old session runs afresh.
            await stub(ch).ResetIdentity(
                svc.ResetIdentityRequest(identity=identity, request_id="reset-1"),
                timeout=CALL_TIMEOUT,
            )
            fresh = await send(ch, identity, "remember the first note", key="first")
            assert fresh.checkpoint_version == 1, fresh
            assert fresh.session_id != first.session_id
            assert "turn 1]" in fresh.output and "n0001" not in fresh.output
            assert (await status_of(ch, identity)).checkpoint_version == 1
            # ... and that new receipt is the one the key now replays.
            assert await send(ch, identity, "remember the first note", key="first") == fresh
            assert (await status_of(ch, identity)).checkpoint_version == 1


# -- 3: after the retention ------------------------------------------------------------

RETENTION = 2.0


@pytest.mark.parametrize("backend", ["sqlite", "etcd"])
async def test_key_replayed_after_its_retention_runs_a_new_turn(
    backend: str, tmp_path: Path, etcd_session: Any, make_fleet: Any
) -> None:
    """Documented behaviour: a receipt is kept for ``--idempotency-retention`` seconds
    (env ``MOBKIT_IDEMPOTENCY_RETENTION``), then the store drops it, so a key replayed
    after its retention is a new request: a NEW turn runs, the checkpoint version goes up
    by one, and the answer carries the new version (the key's receipt is now that one).
    SQLite takes the retention as a flag, the etcd fleet from the environment."""
    identity = f"ret-{backend}"
    if backend == "sqlite":
        proc = sqlite_replica(
            tmp_path, etcd_session, [identity], extra=["--idempotency-retention", str(RETENTION)]
        )
        proc.start(timeout=90)
    else:
        fleet = make_fleet([identity], ttl=2.0)
        proc = fleet.add("r0", wait=False)
        proc.env["MOBKIT_IDEMPOTENCY_RETENTION"] = str(RETENTION)
        proc.start(timeout=90)
    loop = asyncio.get_running_loop()
    try:
        async with grpc.aio.insecure_channel(proc.address or "") as ch:
            await wait_active(ch, identity)
            first = await send(ch, identity, "remember once", key="k-ret")
            acked_at = loop.time()
            assert first.checkpoint_version == 1
            again = await send(ch, identity, "remember once", key="k-ret")
            if loop.time() - acked_at < RETENTION / 2:  # surely still within the retention
                assert again == first
                assert (await status_of(ch, identity)).checkpoint_version == 1

            await wait_past(acked_at, RETENTION + 1.0)
            late = await send(ch, identity, "remember once", key="k-ret")
            assert late.checkpoint_version == 2, (late, first)
            assert late.session_id == first.session_id
            assert "turn 2]" in late.output and late.output != first.output
            assert (await status_of(ch, identity)).checkpoint_version == 2
    finally:
        proc.kill()


# -- 4: an output longer than the receipt keeps ----------------------------------------

OUTPUT_LIMIT = 64


async def test_replay_of_a_long_output_is_truncated_and_runs_no_turn(
    tmp_path: Path, etcd_session: Any
) -> None:
    """Documented behaviour: a receipt keeps at most ``--receipt-output-limit-bytes`` of
    its output. The first answer is in full; a replay answers the first bytes (whole
    UTF-8 characters, at most the limit) with ``output_truncated``, runs no turn, and
    says the same after a SIGKILL and restart."""
    identity = "long-echo"
    proc = sqlite_replica(
        tmp_path,
        etcd_session,
        [identity],
        profile="echo",
        extra=["--receipt-output-limit-bytes", str(OUTPUT_LIMIT)],
    )
    # 2 ASCII bytes, then 3-byte characters: the limit falls inside a character.
    message = "xy" + "€" * 50
    assert len(message.encode()) > OUTPUT_LIMIT

    def check_truncated(replay: pb.DispatchReceipt, first: pb.DispatchReceipt) -> None:
        cut = replay.output.encode()
        assert replay.output_truncated, replay
        assert 0 < len(cut) <= OUTPUT_LIMIT, len(cut)
        assert message.encode().startswith(cut)
        assert len(cut) == 62  # "xy" and 20 whole "€": the 21st would pass the limit
        same = pb.DispatchReceipt()
        same.CopyFrom(replay)
        same.output, same.output_truncated = first.output, False
        assert same == first  # every other field is the original one

    with proc:
        async with grpc.aio.insecure_channel(proc.address or "") as ch:
            await wait_active(ch, identity)
            first = await send(ch, identity, message, key="long-1")
            assert first.output == message and not first.output_truncated
            assert first.checkpoint_version == 1
            short = await send(ch, identity, "short", key="short-1")
            assert short.output == "short" and short.checkpoint_version == 2

            check_truncated(await send(ch, identity, message, key="long-1"), first)
            assert await send(ch, identity, "short", key="short-1") == short
            assert (await status_of(ch, identity)).checkpoint_version == 2

        proc.kill()
        proc.start(timeout=90)
        async with grpc.aio.insecure_channel(proc.address or "") as ch:
            await wait_active(ch, identity, timeout=60)
            check_truncated(await send(ch, identity, message, key="long-1"), first)
            assert await send(ch, identity, "short", key="short-1") == short
            assert (await status_of(ch, identity)).checkpoint_version == 2
