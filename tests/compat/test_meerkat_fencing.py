"""The fencing scenarios of the lease and continuity issues, replayed through the SDK's
dispatcher: a holder stops renewing, its lease expires, another instance takes over."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from compat_support import WAIT, Suite

from mobkit.core.errors import StaleFencingToken

CS = "callback/continuity_store/"
ACQUIRE = "callback/lease_provider/acquire_leases"
RENEW = "callback/lease_provider/renew_leases"


def record(session_id: str, checkpoint_version: int = 0) -> dict[str, Any]:
    return {
        "identity": "fx",
        "agent_runtime_id": "rt-fx",
        "session_id": session_id,
        "generation": 1,
        "checkpoint_version": checkpoint_version,
    }


def save_params(session_id: str, version: int, token: int) -> dict[str, Any]:
    return {
        "identity": "fx",
        "session_id": session_id,
        "generation": 1,
        "version": version,
        "fencing_token": token,
        "snapshot": {"data": base64.b64encode(b"v%d" % version).decode()},
    }


async def test_after_expiry_the_old_holder_is_fenced_off_and_the_new_one_is_not(
    suite: Suite,
) -> None:
    pod_a = suite.short_lived()  # leases of 1 s that pod A will stop renewing
    got = await pod_a.handle_callback(
        ACQUIRE, {"identities": ["fx", "fy"], "runtime_instance": "pod-a"}
    )
    assert {got[i]["result"] for i in ("fx", "fy")} == {"acquired"}
    old = [{k: got[i][k] for k in ("identity", "fencing_token", "ttl")} for i in ("fx", "fy")]
    t1 = old[0]["fencing_token"]
    await pod_a.handle_callback(
        CS + "upsert_continuity_record", {"record": record("s-a"), "fencing_token": t1}
    )
    await pod_a.handle_callback(CS + "save_session_snapshot", save_params("s-a", 1, t1))
    await pod_a.handle_callback(CS + "save_session_snapshot", save_params("s-a", 2, t1))

    # Pod B asks until pod A's lease has expired; until then it is pod A's.
    taken: dict[str, Any] = {}
    async with asyncio.timeout(WAIT):
        while True:
            taken = (
                await suite.call(ACQUIRE, {"identities": ["fx"], "runtime_instance": "pod-b"})
            )["fx"]
            if taken["result"] == "acquired":
                break
            assert taken == {"result": "already_held", "identity": "fx", "holder": "pod-a"}
            await asyncio.sleep(0.25)
    t2 = taken["fencing_token"]
    assert t2 > t1  # the takeover's token is larger

    # Pod A's renewal: fx was taken over, fy simply expired. Both are lost.
    assert await pod_a.handle_callback(RENEW, {"grants": old}) == {
        "fx": {"result": "lost", "identity": "fx"},
        "fy": {"result": "lost", "identity": "fy"},
    }

    # Pod A's writes are refused, even before pod B has written anything.
    with pytest.raises(StaleFencingToken, match=r"^stale_fencing_token: "):
        await pod_a.handle_callback(CS + "save_session_snapshot", save_params("s-a", 3, t1))

    # Pod B rebinds fx to its own session; the checkpoint version is not rewound.
    rebind = {"record": record("s-b"), "fencing_token": t2}
    assert await suite.call(CS + "upsert_continuity_record", rebind) is None
    assert await suite.call(CS + "resolve_record_by_session", {"session_id": "s-b"}) == {
        "record": record("s-b", checkpoint_version=2),
        "fencing_token": t2,
        "checkpoint_version": 2,
    }
    assert await suite.call(CS + "resolve_record_by_session", {"session_id": "s-a"}) is None

    # Every write of pod A's stays refused: save, upsert (a rewind too), delete.
    stale_writes = [
        ("save_session_snapshot", save_params("s-a", 3, t1)),
        ("upsert_continuity_record", {"record": record("s-a"), "fencing_token": t1}),
        ("delete_continuity_record", {"identity": "fx", "fencing_token": t1}),
    ]
    for op, params in stale_writes:
        with pytest.raises(StaleFencingToken, match=r"^stale_fencing_token: "):
            await pod_a.handle_callback(CS + op, params)

    assert await suite.call(CS + "save_session_snapshot", save_params("s-b", 3, t2)) is None
    assert await suite.call(CS + "resolve_many", {"identities": ["fx"]}) == {
        "fx": {"state": "ready", "record": record("s-b", checkpoint_version=3)}
    }
    assert await suite.call(CS + "load_session_snapshot", {"session_id": "s-b"}) == {
        "data": base64.b64encode(b"v3").decode()
    }
