"""``callback/continuity_store/*`` through the SDK's dispatcher, against the real
ContinuityStoreService on etcd (fenced by the lease keys of the LeaseService)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import grpc
import pytest
from compat_support import WAIT, Suite, dispatcher_for

from mobkit.compat.meerkat import MeerkatProviders
from mobkit.core.errors import BackendUnavailable, StaleFencingToken
from mobkit.etcd.process import free_ports

CS = "callback/continuity_store/"
ACQUIRE = "callback/lease_provider/acquire_leases"


def record(
    identity: str, session_id: str, generation: int = 1, checkpoint_version: int = 0
) -> dict[str, Any]:
    return {
        "identity": identity,
        "agent_runtime_id": f"rt-{identity}",
        "session_id": session_id,
        "generation": generation,
        "checkpoint_version": checkpoint_version,
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def lease(suite: Suite, identity: str, holder: str = "pod-a") -> int:
    got = await suite.call(ACQUIRE, {"identities": [identity], "runtime_instance": holder})
    assert got[identity]["result"] == "acquired"
    token: int = got[identity]["fencing_token"]
    return token


async def save(
    suite: Suite, identity: str, session_id: str, version: int, token: int, data: bytes
) -> Any:
    return await suite.call(
        CS + "save_session_snapshot",
        {
            "identity": identity,
            "session_id": session_id,
            "generation": 1,
            "version": version,
            "fencing_token": token,
            "snapshot": {"data": b64(data)},
        },
    )


async def test_the_store_round_trip_speaks_the_sdk_json(suite: Suite) -> None:
    ident, sid = "coordinator", "sess-1"
    resolved = await suite.call(CS + "resolve_many", {"identities": [ident, "worker-1"]})
    assert resolved == {ident: {"state": "uninitialized"}, "worker-1": {"state": "uninitialized"}}

    token = await lease(suite, ident)
    upsert = {"record": record(ident, sid), "fencing_token": token}
    assert await suite.call(CS + "upsert_continuity_record", upsert) is None
    assert await suite.call(CS + "resolve_many", {"identities": [ident]}) == {
        ident: {"state": "ready", "record": record(ident, sid)}
    }

    data = b'{"messages": ["hello"]}'
    assert await save(suite, ident, sid, 1, token, data) is None
    assert await suite.call(CS + "load_session_snapshot", {"session_id": sid}) == {
        "data": b64(data)
    }
    assert await suite.call(CS + "resolve_many", {"identities": [ident]}) == {
        ident: {"state": "ready", "record": record(ident, sid, checkpoint_version=1)}
    }
    assert await suite.call(CS + "resolve_record_by_session", {"session_id": sid}) == {
        "record": record(ident, sid, checkpoint_version=1),
        "fencing_token": token,
        "checkpoint_version": 1,
    }
    # An authoritative absence is null.
    assert await suite.call(CS + "resolve_record_by_session", {"session_id": "nobody"}) is None
    assert await suite.call(CS + "load_session_snapshot", {"session_id": "nobody"}) is None

    # Compare-and-delete: Meerkat's "row-sha256:<hex>" form, compared with the stored bytes.
    delete = CS + "delete_session_snapshot_if_current_revision"
    wrong = "row-sha256:" + hashlib.sha256(b"other").hexdigest()
    right = "row-sha256:" + hashlib.sha256(data).hexdigest()
    for revision in (wrong, "not-a-revision", ""):
        params = {"session_id": sid, "expected_current_revision": revision}
        assert await suite.call(delete, params) is False
    assert await suite.call(CS + "load_session_snapshot", {"session_id": sid}) is not None
    params = {"session_id": sid, "expected_current_revision": right}
    assert await suite.call(delete, params) is True
    assert await suite.call(CS + "load_session_snapshot", {"session_id": sid}) is None
    broken = (await suite.call(CS + "resolve_many", {"identities": [ident]}))[ident]
    assert broken["state"] == "broken"
    assert broken["failure"]["kind"] == "snapshot_missing"
    assert broken["failure"]["record"] == record(ident, sid, checkpoint_version=1)

    params = {"identity": ident, "fencing_token": token}
    assert await suite.call(CS + "delete_continuity_record", params) is None
    assert await suite.call(CS + "resolve_many", {"identities": [ident]}) == {
        ident: {"state": "uninitialized"}
    }
    assert await suite.call(CS + "resolve_record_by_session", {"session_id": sid}) is None
    assert await suite.call(CS + "delete_continuity_record", params) is None  # a retry succeeds


async def test_a_session_rebind_never_rewinds_the_checkpoint_version(suite: Suite) -> None:
    ident = "worker-1"
    token = await lease(suite, ident)
    await suite.call(
        CS + "upsert_continuity_record", {"record": record(ident, "s1"), "fencing_token": token}
    )
    for version in (1, 2, 3):
        await save(suite, ident, "s1", version, token, b"v%d" % version)

    # The runtime rebinds the identity to a new session, presenting an older version.
    rebind = {"record": record(ident, "s2", checkpoint_version=1), "fencing_token": token}
    assert await suite.call(CS + "upsert_continuity_record", rebind) is None
    assert await suite.call(CS + "resolve_record_by_session", {"session_id": "s2"}) == {
        "record": record(ident, "s2", checkpoint_version=3),
        "fencing_token": token,
        "checkpoint_version": 3,  # nothing saved in s2 yet: the next save must pass 3
    }
    with pytest.raises(Exception, match="stale_checkpoint_version"):
        await save(suite, ident, "s2", 3, token, b"not newer")
    assert await save(suite, ident, "s2", 4, token, b"v4") is None

    # A destructive reset (a new generation) is what starts the version stream over.
    reset = {"record": record(ident, "s3", generation=2), "fencing_token": token}
    assert await suite.call(CS + "upsert_continuity_record", reset) is None
    assert await suite.call(CS + "resolve_many", {"identities": [ident]}) == {
        ident: {"state": "ready", "record": record(ident, "s3", generation=2)}
    }


async def test_resolve_record_by_session_raises_when_the_store_cannot_answer(
    suite: Suite,
) -> None:
    token = await lease(suite, "coordinator")
    upsert = {"record": record("coordinator", "s1"), "fencing_token": token}
    await suite.call(CS + "upsert_continuity_record", upsert)

    async with grpc.aio.insecure_channel(f"127.0.0.1:{free_ports(1)[0]}") as nowhere:
        cut_off = dispatcher_for(MeerkatProviders.from_channel(nowhere, timeout=WAIT))
        with pytest.raises(BackendUnavailable, match=r"^backend_unavailable: "):
            await cut_off.handle_callback(CS + "resolve_record_by_session", {"session_id": "s1"})
        with pytest.raises(BackendUnavailable):
            await cut_off.handle_callback(CS + "resolve_many", {"identities": ["coordinator"]})


async def test_writes_without_the_current_lease_are_refused(suite: Suite) -> None:
    """On etcd the store also checks the lease key: a token nobody holds cannot write."""
    token = await lease(suite, "coordinator")
    upsert = {"record": record("coordinator", "s1"), "fencing_token": token + 1000}
    with pytest.raises(StaleFencingToken, match=r"^stale_fencing_token: "):
        await suite.call(CS + "upsert_continuity_record", upsert)
    assert await suite.call(CS + "resolve_many", {"identities": ["coordinator"]}) == {
        "coordinator": {"state": "uninitialized"}
    }
