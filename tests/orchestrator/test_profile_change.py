"""A roster edit that changes an Active identity's profile respawns it under the new
profile: the old session closes, its lease is handed back, and the identity is claimed
and activated again at once (it never stays Dormant holding its lease)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.testing.fleet import ACTIVE, wait_fleet
from mobkit.testing.servers import running_services
from mobkit.testing.suite import send_request, stub, until, write_roster


async def test_a_profile_change_respawns_the_identity(tmp_path: Path, etcd_session: Any) -> None:
    roster = write_roster(tmp_path / "roster.toml", ["shifty"], profile="notebook")
    async with running_services(
        ["all"],
        etcd_endpoints=[etcd_session.endpoint],
        etcd_prefix=f"/respawn-{uuid.uuid4().hex[:8]}",
        roster=str(roster),
        data_dir=str(tmp_path),
        continuity_backend="sqlite",
    ) as (_server, channel, _):
        await wait_fleet(channel, 1, owners=1, timeout=30)
        o = stub(channel)
        before = (await o.GetIdentityStatus(svc.GetIdentityStatusRequest(identity="shifty"))).status
        assert before.state == ACTIVE

        write_roster(roster, ["shifty"], profile="echo")  # the watcher reconciles it
        await o.Reconcile(svc.ReconcileRequest(), timeout=30)  # or this, whichever is first

        async def respawned() -> bool:
            reply = await o.GetIdentityStatus(svc.GetIdentityStatusRequest(identity="shifty"))
            token = reply.status.lease.fencing_token
            return reply.status.state == ACTIVE and token > before.lease.fencing_token

        await until(respawned, "shifty active again under a new lease", timeout=30)
        after = (await o.GetIdentityStatus(svc.GetIdentityStatusRequest(identity="shifty"))).status
        reply = await o.Send(send_request("shifty", "hello there"), timeout=20)
        assert reply.receipt.session_id == after.session_id
