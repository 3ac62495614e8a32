"""Asynchronous turns by ticket (SubmitTurn, GetTurn, WatchTurn) on real servers: a ticket
is answered at once and its turn runs exactly once, with Send's idempotency rules; it
waits out an identity that is not Active; it survives a SIGKILL of the replica holding
it, still with exactly one turn; a stale owner cannot write one; it expires with its
retention."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from mobkit.core.errors import StaleFencingToken
from mobkit.core.keyspace import Keyspace
from mobkit.core.types import DispatchInput
from mobkit.etcd.client import EtcdClient
from mobkit.gen.lease.v1 import lease_service_pb2 as lsvc
from mobkit.gen.lease.v1 import lease_service_pb2_grpc as lgrpc
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.orchestrator import ticket_store
from mobkit.orchestrator.ticket_store import EtcdTicketStore
from mobkit.orchestrator.tickets import TicketRecord, receipt_only, ticket_id, turn_message
from mobkit.testing.fleet import Fleet, wait_fleet
from mobkit.testing.servers import running_services
from mobkit.testing.suite import reason, send_request, stub, text_input, until, write_roster

pytestmark = pytest.mark.timeout(240)


async def submit(channel: grpc.aio.Channel, identity: str, text: str, **kw: Any) -> svc.TurnTicket:
    key = kw.pop("key", None)
    request = svc.SubmitTurnRequest(identity=identity, input=text_input(text, key=key), **kw)
    return (await stub(channel).SubmitTurn(request, timeout=10)).turn


async def watch_turn(
    channel: grpc.aio.Channel, turn_id: str, *, progress: bool = False
) -> tuple[list[str], svc.TurnTicket]:
    """The progress kinds the stream relayed, and the finished ticket it ended with."""
    kinds, final = [], None
    request = svc.WatchTurnRequest(turn_id=turn_id, progress=progress)
    async for item in stub(channel).WatchTurn(request, timeout=90):
        assert final is None, "the finished ticket is the last item"
        if item.HasField("progress"):
            kinds.append(item.progress.WhichOneof("event") or "")
        else:
            assert item.HasField("turn")
            final = item.turn
    assert final is not None
    return kinds, final


async def lease_holder(channel: grpc.aio.Channel, identity: str) -> str | None:
    reply = await lgrpc.LeaseServiceStub(channel).ListLeases(
        lsvc.ListLeasesRequest(page_size=1000), timeout=10
    )
    return next((lease.holder for lease in reply.leases if lease.identity == identity), None)


@contextlib.asynccontextmanager
async def suite(
    tmp_path: Path, etcd: Any, roster: Path, **settings: Any
) -> AsyncIterator[grpc.aio.Channel]:
    """``serve all`` in this process, with SQLite continuity and a prefix of its own."""
    settings.setdefault("etcd_prefix", f"/tickets-{uuid.uuid4().hex[:8]}")
    async with running_services(
        ["all"],
        etcd_endpoints=[etcd.endpoint],
        roster=str(roster),
        data_dir=str(tmp_path),
        continuity_backend="sqlite",
        **settings,
    ) as (_server, channel, _):
        yield channel


async def notes(channel: grpc.aio.Channel, identity: str) -> str:
    return (await stub(channel).Send(send_request(identity, "recall"), timeout=15)).receipt.output


async def test_a_ticket_runs_its_turn_once_with_sends_idempotency(
    tmp_path: Path, etcd_session: Any
) -> None:
    roster = write_roster(tmp_path / "roster.toml", ["ann", "ivy"], internal=["ivy"])
    async with suite(tmp_path, etcd_session, roster) as channel:
        await wait_fleet(channel, 2, owners=1, timeout=30)
        ticket = await submit(channel, "ann", "remember tea", key="k-1")
        assert ticket.state in (svc.TURN_STATE_PENDING, svc.TURN_STATE_SUCCEEDED)
        _, done = await watch_turn(channel, ticket.turn_id)
        assert done.state == svc.TURN_STATE_SUCCEEDED, done
        receipt = done.receipt
        assert receipt.identity == "ann" and "noted 'tea'" in receipt.output
        assert receipt.fencing_token > 0 and receipt.checkpoint_version > 0
        got = (
            await stub(channel).GetTurn(svc.GetTurnRequest(turn_id=ticket.turn_id), timeout=10)
        ).turn
        assert got == done

        # The same key: the same ticket, and a Send with it replays the same receipt.
        again = await submit(channel, "ann", "remember tea", key="k-1")
        assert again.turn_id == ticket.turn_id and again.receipt == receipt
        replay = await stub(channel).Send(
            send_request("ann", "remember tea", key="k-1"), timeout=10
        )
        assert replay.receipt.checkpoint_version == receipt.checkpoint_version
        assert (await notes(channel, "ann")).count("tea") == 1

        # Without a key, a new ticket each time; internal-only needs `dispatch`.
        other = await submit(channel, "ivy", "remember cake", dispatch=True)
        _, other_done = await watch_turn(channel, other.turn_id)
        assert other_done.state == svc.TURN_STATE_SUCCEEDED
        refusals = [
            (svc.SubmitTurnRequest(identity="ivy", input=text_input("x")), "NOT_ADDRESSABLE"),
            (svc.SubmitTurnRequest(identity="zed", input=text_input("x")), "IDENTITY_NOT_FOUND"),
            (svc.SubmitTurnRequest(identity="ann", input=text_input("")), "INVALID_ARGUMENT"),
            (svc.SubmitTurnRequest(identity="a b", input=text_input("x")), "INVALID_IDENTITY"),
        ]
        for request, expected in refusals:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub(channel).SubmitTurn(request, timeout=10)
            assert reason(refused.value) == expected
        for turn_id in ("turn-nope", "run-1", ""):
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await stub(channel).GetTurn(svc.GetTurnRequest(turn_id=turn_id), timeout=10)
            assert reason(missing.value) == (
                "INVALID_ARGUMENT" if not turn_id else "TURN_NOT_FOUND"
            )

        # A suspended identity: the ticket waits, then runs once it is resumed.
        await stub(channel).SuspendIdentity(svc.SuspendIdentityRequest(identity="ann"), timeout=10)
        waiting = await submit(channel, "ann", "remember jam")
        assert waiting.state == svc.TURN_STATE_PENDING
        got = await stub(channel).GetTurn(svc.GetTurnRequest(turn_id=waiting.turn_id), timeout=10)
        assert got.turn.state == svc.TURN_STATE_PENDING and not got.turn.HasField("receipt")
        await stub(channel).ResumeIdentity(svc.ResumeIdentityRequest(identity="ann"), timeout=10)
        _, jam = await watch_turn(channel, waiting.turn_id, progress=True)
        assert jam.state == svc.TURN_STATE_SUCCEEDED, jam
        assert (await notes(channel, "ann")).count("jam") == 1


async def test_a_ticket_survives_a_kill_of_the_replica_holding_it(
    tmp_path: Path, etcd_session: Any
) -> None:
    roster = write_roster(tmp_path / "roster.toml", ["ann", "bob", "cy", "dee"])
    fleet = Fleet(tmp_path, etcd_session.endpoint, roster, ttl=2.0)
    replicas = [fleet.add(), fleet.add()]
    channels = [grpc.aio.insecure_channel(r.address) for r in replicas]
    try:
        await wait_fleet(channels[0], 4, owners=2, timeout=90)
        await stub(channels[0]).SuspendIdentity(
            svc.SuspendIdentityRequest(identity="ann"), timeout=15
        )
        # Submitted to replica 0, whichever owns ann: forwarded to the owner when needed.
        ticket = await submit(channels[0], "ann", "remember once", key="once-1")
        assert ticket.state == svc.TURN_STATE_PENDING
        holder = await lease_holder(channels[0], "ann")
        assert holder is not None
        victim = next(r for r in replicas if holder.startswith(f"{r.name}~"))
        index = replicas.index(victim)
        survivor, survivor_name = channels[1 - index], replicas[1 - index].name
        victim.kill()

        async def released() -> bool:
            holder = await lease_holder(survivor, "ann")
            return holder is None or not holder.startswith(f"{victim.name}~")

        # The victim's lease on the suspended ann expires; resumed, the survivor takes it
        # and runs the ticket the victim left open.
        await until(released, "the victim's lease on ann gone", 30)
        await stub(survivor).ResumeIdentity(svc.ResumeIdentityRequest(identity="ann"), timeout=30)
        _, done = await watch_turn(survivor, ticket.turn_id)
        assert done.state == svc.TURN_STATE_SUCCEEDED, done
        assert done.receipt.fencing_token > 0
        holder = await lease_holder(survivor, "ann")
        assert holder is not None and holder.startswith(f"{survivor_name}~")
        assert (await notes(survivor, "ann")).count("once") == 1
    finally:
        for channel in channels:
            await channel.close()
        fleet.close()


def ticket(identity: str, turn_id: str, now_ms: int, retention_ms: int = 60_000) -> TicketRecord:
    message = turn_message(turn_id, DispatchInput("hello"))
    return TicketRecord(turn_id, identity, message, False, now_ms, now_ms + retention_ms)


async def test_a_stale_owners_ticket_is_refused_by_the_fence(
    etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    """The ticket write compares the identity's lease key, as a checkpoint does: an
    owner whose lease was taken over writes nothing, and while a replica holds the
    identity nobody else can write one "for the next owner" either."""
    keys = Keyspace(etcd_prefix)
    now = 1_000_000_000_000
    store_now = EtcdTicketStore(etcd_client, etcd_prefix, 60.0, clock_ms=lambda: now)
    await etcd_client.put(keys.lease("ann"), b"old-owner")
    old = int((await etcd_client.get(keys.lease("ann"))).create_revision)
    await etcd_client.delete(keys.lease("ann"))
    await etcd_client.put(keys.lease("ann"), b"new-owner")
    new = int((await etcd_client.get(keys.lease("ann"))).create_revision)
    assert new > old
    record = ticket("ann", "turn-stale", now)
    for stale in (old, 0):
        with pytest.raises(StaleFencingToken) as refused:
            await store_now.create(record, stale)
        assert refused.value.metadata["current"] == str(new)
    assert await store_now.get("turn-stale") is None
    assert await store_now.open_tickets("ann") == []

    _, created = await store_now.create(record, new)
    assert created and await store_now.get("turn-stale") == record
    assert await store_now.open_tickets("ann") == [record]
    again, created = await store_now.create(ticket("ann", "turn-stale", now + 5), new)
    assert not created and again == record  # the same turn id: the ticket already there
    # A failure is written under the owner's token too.
    with pytest.raises(StaleFencingToken):
        await store_now.fail(record.failed("TOOL_FAILED", "x", 1, now), old)


async def test_a_ticket_past_its_retention_is_not_found_and_not_run_again(
    etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    keys = Keyspace(etcd_prefix)
    clock = [1_000_000_000_000]
    store = EtcdTicketStore(etcd_client, etcd_prefix, 60.0, clock_ms=lambda: clock[0])
    await etcd_client.put(keys.lease("bob"), b"owner")
    token = int((await etcd_client.get(keys.lease("bob"))).create_revision)
    record = ticket("bob", "turn-old", clock[0], retention_ms=1_000)
    await store.create(record, token)
    assert await store.get("turn-old") == record
    clock[0] += 1_001
    assert await store.get("turn-old") is None
    assert await store.open_tickets("bob") == []  # a new owner does not run it
    # The turn id is free again (its record only waits for etcd to drop it).
    fresh = ticket("bob", "turn-old", clock[0])
    assert await store.create(fresh, token) == (fresh, True)


async def test_get_turn_after_the_retention_is_turn_not_found(
    tmp_path: Path, etcd_session: Any
) -> None:
    roster = write_roster(tmp_path / "roster.toml", ["ann"])
    async with suite(tmp_path, etcd_session, roster, idempotency_retention=1.0) as channel:
        await wait_fleet(channel, 1, owners=1, timeout=30)
        first = await submit(channel, "ann", "remember fig")
        _, done = await watch_turn(channel, first.turn_id)
        assert done.state == svc.TURN_STATE_SUCCEEDED

        async def expired() -> bool:
            try:
                await stub(channel).GetTurn(svc.GetTurnRequest(turn_id=first.turn_id), timeout=10)
            except grpc.aio.AioRpcError as err:
                return reason(err) == "TURN_NOT_FOUND"
            return False

        await until(expired, "the ticket past its retention", 30)


def test_a_keyless_ticket_id_names_its_identity_and_time_when_they_fit() -> None:
    """What lets a keyless ticket's receipt answer for it without a record."""
    turn_id = ticket_id("ann.b-c", None, 0x18F00000000)
    assert receipt_only(turn_id) == ("ann.b-c", 0x18F00000000)
    assert ticket_id("ann", None, 5) != ticket_id("ann", None, 5)  # random
    keyed = ticket_id("ann", "k-1", 5)
    assert keyed == ticket_id("ann", "k-1", 6) and receipt_only(keyed) is None
    long = "x" * 250  # a valid identity, but the id would pass the name bound
    assert receipt_only(ticket_id(long, None, 5)) is None
    for other in ("turn-nope", "run-1", "turn-zz-0123456789abcdef.ann", "turn-1-short.ann"):
        assert receipt_only(other) is None


async def test_open_tickets_of_many_identities_are_read_in_one_look(
    etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    """What a burst of activations asks: every identity's open tickets at once, whether
    read by each identity's markers (a few) or by one range over all of them (many).
    A name that another extends (``ann``, ``ann2``) gets only its own."""
    now = 1_000_000_000_000
    store = EtcdTicketStore(etcd_client, etcd_prefix, 60.0, clock_ms=lambda: now)
    written = {"ann": ["turn-a1", "turn-a2"], "ann2": ["turn-b1"], "cy": ["turn-c1"]}
    for identity, turn_ids in written.items():
        for turn_id in turn_ids:
            assert (await store.create(ticket(identity, turn_id, now), 0))[1]
    failed = ticket("cy", "turn-c2", now).failed("TOOL_FAILED", "x", 1, now)
    await store.fail(failed, 0)  # written, but finished: not open
    for asked in (["ann", "ann2", "cy"], ["ann", "ann2", "cy", "d", "e", "f", "g"]):
        found = await store.open_tickets_of(asked)
        assert set(found) == set(asked)
        got = {i: sorted(r.turn_id for r in records) for i, records in found.items()}
        assert got == {i: written.get(i, []) for i in asked}


async def test_finished_tickets_are_forgotten_once_past_their_retention(
    etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    """A finished ticket's marker waits for that identity's next ticket write to drop
    it; an identity that takes no more tickets must not keep it in memory for ever.
    Its marker expires with its retention lease, so past that nothing is kept."""
    clock = [1_000_000_000_000]
    store = EtcdTicketStore(etcd_client, etcd_prefix, 60.0, clock_ms=lambda: clock[0])
    idle = [f"idle-{i}" for i in range(ticket_store.SWEEP_EVERY)]
    for identity in idle:
        store.finished(ticket(identity, f"turn-{identity}", clock[0], retention_ms=1_000))
    assert len(store._finished) == len(idle)  # the bound under test
    clock[0] += 1_001
    for i in range(ticket_store.SWEEP_EVERY):  # the sweep runs once per so many notes
        store.finished(ticket("busy", f"turn-busy-{i}", clock[0]))
    assert set(store._finished) == {"busy"}


async def test_tickets_left_for_the_next_owner_all_run_when_a_fleet_starts(
    tmp_path: Path, etcd_session: Any
) -> None:
    """Tickets written while no replica held their identities: the replica that then
    claims them all at once (one burst of activations, read in one look) runs each
    ticket's turn exactly once."""
    prefix = f"/tickets-{uuid.uuid4().hex[:8]}"
    ids = [f"p{i}" for i in range(7)]
    client = await EtcdClient.connect([etcd_session.endpoint], timeout=10)
    try:
        store = EtcdTicketStore(client, prefix, 3600.0)
        now = int(time.time() * 1000)
        for identity in ids:
            message = DispatchInput(f"remember left-{identity}", idempotency_key=f"k-{identity}")
            turn_id = ticket_id(identity, message.idempotency_key, now)
            record = TicketRecord(
                turn_id, identity, turn_message(turn_id, message), True, now, now + 3_600_000
            )
            assert (await store.create(record, 0))[1]
    finally:
        await client.close()
    roster = write_roster(tmp_path / "roster.toml", ids)
    async with suite(tmp_path, etcd_session, roster, etcd_prefix=prefix) as channel:
        await wait_fleet(channel, len(ids), owners=1, timeout=60)
        for identity in ids:
            turn_id = ticket_id(identity, f"k-{identity}", 0)  # a keyed id ignores the time
            _, done = await watch_turn(channel, turn_id)
            assert done.state == svc.TURN_STATE_SUCCEEDED, done
            assert (await notes(channel, identity)).count(f"left-{identity}") == 1
