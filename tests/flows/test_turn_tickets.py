"""Asynchronous turns by ticket (SubmitTurn, GetTurn, WatchTurn) on real servers: a ticket
is answered at once and its turn runs exactly once, with Send's idempotency rules; it
waits out an identity that is not Active; it survives a SIGKILL of the replica holding
it, still with exactly one turn."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from test_flow_failover import run_owner, taken_over

from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.testing.fleet import Fleet, wait_fleet
from mobkit.testing.servers import running_services
from mobkit.testing.suite import reason, send_request, stub, text_input, until, write_roster

pytestmark = pytest.mark.timeout(240)


async def submit(channel: grpc.aio.Channel, identity: str, text: str, **kw: Any) -> svc.TurnTicket:
    key = kw.pop("key", None)
    request = svc.SubmitTurnRequest(identity=identity, input=text_input(text, key=key), **kw)
    return (await stub(channel).SubmitTurn(request, timeout=10)).turn


async def watch_turn(channel: grpc.aio.Channel, turn_id: str) -> tuple[list[str], svc.TurnTicket]:
    kinds, final = [], None
    async for item in stub(channel).WatchTurn(svc.WatchTurnRequest(turn_id=turn_id), timeout=60):
        if item.HasField("event"):
            kinds.append(item.event.kind)
        else:
            final = item.turn
    assert final is not None
    return kinds, final


async def notes(channel: grpc.aio.Channel, identity: str) -> str:
    return (await stub(channel).Send(send_request(identity, "recall"), timeout=15)).receipt.output


async def test_a_ticket_runs_its_turn_once_with_sends_idempotency(
    tmp_path: Path, etcd_session: Any
) -> None:
    roster = write_roster(tmp_path / "roster.toml", ["ann", "ivy"], internal=["ivy"])
    async with running_services(
        ["all"],
        etcd_endpoints=[etcd_session.endpoint],
        etcd_prefix=f"/tickets-{uuid.uuid4().hex[:8]}",
        roster=str(roster),
        data_dir=str(tmp_path),
        continuity_backend="sqlite",
    ) as (_server, channel, _):
        await wait_fleet(channel, 2, owners=1, timeout=30)
        ticket = await submit(channel, "ann", "remember tea", key="k-1")
        assert ticket.state in (svc.TURN_STATE_PENDING, svc.TURN_STATE_SUCCEEDED)
        kinds, done = await watch_turn(channel, ticket.turn_id)
        assert done.state == svc.TURN_STATE_SUCCEEDED, done
        assert kinds[0] == "run_started" and kinds[-1] == "run_succeeded"
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

        async def retried() -> bool:
            turn = (
                await stub(channel).GetTurn(svc.GetTurnRequest(turn_id=waiting.turn_id), timeout=10)
            ).turn
            return turn.state == svc.TURN_STATE_PENDING and turn.attempts >= 2

        await until(retried, "the ticket retrying while ann is suspended", 30)
        await stub(channel).ResumeIdentity(svc.ResumeIdentityRequest(identity="ann"), timeout=10)
        _, jam = await watch_turn(channel, waiting.turn_id)
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
        ticket = await submit(channels[0], "ann", "remember once", key="once-1")

        async def held() -> bool:
            return await run_owner(channels[0], ticket.turn_id) is not None

        await until(held, "the ticket claimed", 30)
        holder = await run_owner(channels[0], ticket.turn_id)
        assert holder is not None
        victim = next(r for r in replicas if holder.startswith(f"{r.name}~"))
        index = replicas.index(victim)
        survivor, survivor_name = channels[1 - index], replicas[1 - index].name
        victim.kill()
        await taken_over(survivor, survivor_name, ticket.turn_id)
        await stub(survivor).ResumeIdentity(svc.ResumeIdentityRequest(identity="ann"), timeout=30)
        _, done = await watch_turn(survivor, ticket.turn_id)
        assert done.state == svc.TURN_STATE_SUCCEEDED, done
        assert (await notes(survivor, "ann")).count("once") == 1
    finally:
        for channel in channels:
            await channel.close()
        fleet.close()
