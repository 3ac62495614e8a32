"""Turn tickets in miniature (issue 18): what a ticket leaves in etcd is gone once its
retention has passed, and every ticket's turn ran exactly once.

``mobkit serve all`` on the etcd continuity backend, a real etcd, a retention of 3 s.
600 tickets over 4 notebook identities, 8 in flight, every other one with an
idempotency key (a keyed ticket writes a record and an open marker beside its
receipt; a keyless one that commits at once is its receipt alone); every 10th keyed
one is submitted again with its key. Asserted:

1. every ticket succeeds, and a key submitted again returns the same ticket;
2. each identity's checkpoint version (one per turn run) grew by the distinct
   tickets sent to it (a resubmitted key replays, its turn does not run again);
3. once the retention has passed with no new ticket, no ticket record, open marker
   or receipt of theirs is left under the suite's prefix, and ``GetTurn`` of an old
   ticket answers TURN_NOT_FOUND.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest

from mobkit.core.keyspace import Keyspace
from mobkit.etcd.client import EtcdClient
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.testing.fleet import wait_fleet
from mobkit.testing.processes import ServeProcess
from mobkit.testing.suite import reason, stub, text_input, until, write_roster
from mobkit.testing.tickets import ticket_keys

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

IDS = ["ta", "tb", "tc", "td"]
TICKETS = 600
RETENTION = 3.0
FINISHED = (svc.TURN_STATE_SUCCEEDED, svc.TURN_STATE_FAILED)


async def test_tickets_leave_nothing_past_their_retention_and_run_once(
    tmp_path: Path, etcd_session: Any
) -> None:
    prefix = f"/ticket-soak-{uuid.uuid4().hex[:8]}"
    roster = write_roster(tmp_path / "roster.toml", IDS)
    args = [
        "--etcd-endpoints", etcd_session.endpoint, "--etcd-prefix", prefix,
        "--roster", str(roster), "--data-dir", str(tmp_path / "suite"),
        "--continuity-backend", "etcd", "--idempotency-retention", str(RETENTION),
        "--log-level", "WARNING",
    ]  # fmt: skip
    keys = Keyspace(prefix)
    sent: Counter[str] = Counter()
    first_keyed = ""
    with ServeProcess("all", args, log_dir=tmp_path, name="suite") as proc:
        async with grpc.aio.insecure_channel(proc.address or "") as ch:
            await wait_fleet(ch, len(IDS), owners=1, timeout=60)
            o = stub(ch)

            async def ticket(n: int, key: str | None) -> svc.TurnTicket:
                request = svc.SubmitTurnRequest(
                    identity=IDS[n % len(IDS)], input=text_input(f"t{n}", key=key)
                )
                try:
                    turn = (await o.SubmitTurn(request, timeout=30)).turn
                    if turn.state not in FINISHED:
                        watch = o.WatchTurn(svc.WatchTurnRequest(turn_id=turn.turn_id), timeout=30)
                        turn = [item async for item in watch][-1].turn
                except grpc.aio.AioRpcError as err:
                    pytest.fail(f"ticket {n}: {reason(err)} ({err.details()})\n{proc.log_tail()}")
                assert turn.state == svc.TURN_STATE_SUCCEEDED, (n, turn)
                return turn

            async def versions() -> dict[str, int]:
                out = {}
                for identity in IDS:
                    request = svc.GetIdentityStatusRequest(identity=identity)
                    reply = await o.GetIdentityStatus(request, timeout=10)
                    out[identity] = reply.status.checkpoint_version
                return out

            before = await versions()
            numbers = iter(range(TICKETS))

            async def worker() -> None:
                nonlocal first_keyed
                for n in numbers:
                    key = f"k-{n}" if n % 2 else None
                    turn = await ticket(n, key)
                    sent[IDS[n % len(IDS)]] += 1
                    if key is not None:
                        first_keyed = first_keyed or turn.turn_id
                        if n % 20 == 1:
                            assert (await ticket(n, key)).turn_id == turn.turn_id

            await asyncio.gather(*(worker() for _ in range(8)))

            after = await versions()
            assert {i: after[i] - before[i] for i in IDS} == dict(sent)

            client = await EtcdClient.connect([etcd_session.endpoint], timeout=10)
            try:
                during = await ticket_keys(client, keys)
                assert during[0] > 0 and during[2] > 0  # the run did leave keys behind

                async def gone() -> bool:
                    return await ticket_keys(client, keys) == (0, 0, 0)

                await until(gone, "every ticket key expired", timeout=4 * RETENTION + 30)
            finally:
                await client.close()
            with pytest.raises(grpc.aio.AioRpcError) as old:
                await o.GetTurn(svc.GetTurnRequest(turn_id=first_keyed), timeout=10)
            assert reason(old.value) == "TURN_NOT_FOUND"
