"""The continuity store contract (CONTRACT-01), run unchanged against every backend:
memory, SQLite, etcd, and each of them behind a real gRPC server (fixture ``h``)."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from continuity_support import SNAPSHOT_LIMIT, Harness, checkpoint, record, snapshot

from mobkit.continuity.codec import record_key, session_key, snapshot_key
from mobkit.continuity.domain import (
    MAX_SESSIONS_PER_IDENTITY,
    ContinuityStore,
    LoadedSnapshot,
    SessionRecord,
)
from mobkit.core.errors import (
    ContinuityRecordNotFound,
    GenerationMismatch,
    InvalidArgument,
    InvalidIdentity,
    MobKitError,
    SnapshotTooLarge,
    StaleCheckpointVersion,
    StaleFencingToken,
    StoreCorruption,
)
from mobkit.core.types import (
    Broken,
    BufferedExport,
    ContinuityFailureKind,
    Ready,
    SessionSnapshot,
    SyncWriteThrough,
    Uninitialized,
)

pytestmark = pytest.mark.timeout(60)

ID = "planner"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def started(h: Harness, identity: str = ID, session: str = "s-1", gen: int = 0) -> int:
    """A record at checkpoint 0 under a fresh token; returns the token."""
    token = await h.token(identity)
    await h.store.upsert_continuity_record(record(identity, session, gen), token)
    return token


async def state_of(h: Harness, identity: str = ID) -> Any:
    [(got, state)] = await h.store.resolve_many([identity])
    assert got == identity
    return state


def failure_kind(state: Any) -> ContinuityFailureKind:
    assert isinstance(state, Broken), state
    return state.failure.kind


async def unchanged(h: Harness, action: Callable[[], Awaitable[Any]], error: type) -> MobKitError:
    """``action`` raises ``error`` and leaves every stored byte as it was."""
    before = await h.dump()
    with pytest.raises(error) as info:
        await action()
    assert await h.dump() == before
    return info.value


# -- ResolveMany -----------------------------------------------------------------------------


async def test_resolve_answers_every_identity_in_order(h: Harness) -> None:
    token = await started(h, "b-ready", "s-b")
    await h.store.save_session_snapshot(
        checkpoint(snapshot("b"), identity="b-ready", session_id="s-b", version=1, token=token)
    )
    await started(h, "d-fresh", "s-d")
    ids = ["z-none", "b-ready", "a-none", "d-fresh"]
    entries = await h.store.resolve_many(ids)
    assert [i for i, _ in entries] == ids
    states = [s for _, s in entries]
    assert states[0] == Uninitialized() and states[2] == Uninitialized()
    assert states[1] == Ready(record("b-ready", "s-b", 0, 1))
    assert states[3] == Ready(record("d-fresh", "s-d", 0, 0))
    assert await h.store.resolve_many([]) == []


async def test_resolve_many_identities_spanning_batches(h: Harness) -> None:
    ids = [f"agent-{i:03d}" for i in range(300)]  # more than one etcd txn of ranges
    ready = ids[::7]
    for i, identity in enumerate(ready):
        token = await h.token(identity)
        await h.store.upsert_continuity_record(record(identity, f"s-{i}"), token)
        await h.store.save_session_snapshot(
            checkpoint(
                snapshot(identity), identity=identity, session_id=f"s-{i}", version=1, token=token
            )
        )
    entries = await h.store.resolve_many(list(reversed(ids)))
    assert [i for i, _ in entries] == list(reversed(ids))
    for identity, state in entries:
        assert isinstance(state, Ready if identity in ready else Uninitialized), (identity, state)


async def test_resolve_refuses_duplicates_and_invalid_identities(h: Harness) -> None:
    await started(h)
    err = await unchanged(h, lambda: h.store.resolve_many([ID, "x", ID]), InvalidArgument)
    assert err.metadata["field"] == "identities"
    for bad in ("", "has space", "a/b", "tab\there"):
        err = await unchanged(h, lambda bad=bad: h.store.resolve_many(["ok", bad]), InvalidIdentity)
        assert err.metadata["identity"] == bad


# -- records -----------------------------------------------------------------------------------


async def test_upsert_creates_a_ready_record_at_checkpoint_zero(h: Harness) -> None:
    token = await started(h)
    assert await state_of(h) == Ready(record())
    assert await h.store.resolve_record_by_session("s-1") == SessionRecord(record(), token, 0)
    assert await h.store.load_session_snapshot("s-1") is None
    health = await h.store.health(ID)
    assert health.store_reachable and health.last_checkpoint_version == 0
    assert (await h.store.health("nobody")).last_checkpoint_version is None


async def test_upsert_is_idempotent(h: Harness) -> None:
    token = await started(h)
    before = await h.dump()
    await h.store.upsert_continuity_record(record(), token)
    assert await h.dump() == before
    assert await state_of(h) == Ready(record())


async def test_upsert_never_moves_generation_or_checkpoint_back(h: Harness) -> None:
    token = await started(h, gen=2)
    await h.store.save_session_snapshot(checkpoint(snapshot("v3"), gen=2, version=3, token=token))
    err = await unchanged(
        h,
        lambda: h.store.upsert_continuity_record(record(gen=1, version=9), token),
        GenerationMismatch,
    )
    assert (err.metadata["presented"], err.metadata["current"]) == ("1", "2")
    err = await unchanged(
        h,
        lambda: h.store.upsert_continuity_record(record(gen=2, version=2), token),
        StaleCheckpointVersion,
    )
    assert (err.metadata["presented"], err.metadata["current"]) == ("2", "3")
    # A reset: a new generation and session start again at checkpoint 0.
    await h.store.upsert_continuity_record(record(session_id="s-2", gen=3), token)
    assert await state_of(h) == Ready(record(session_id="s-2", gen=3))
    await h.store.save_session_snapshot(
        checkpoint(snapshot("gen3"), session_id="s-2", gen=3, version=1, token=token)
    )
    assert await state_of(h) == Ready(record(session_id="s-2", gen=3, version=1))


async def test_a_session_belongs_to_one_identity(h: Harness) -> None:
    await started(h, "first", "shared")
    other = await h.token("second")
    err = await unchanged(
        h,
        lambda: h.store.upsert_continuity_record(record("second", "shared"), other),
        InvalidArgument,
    )
    assert err.metadata["field"] == "record.session_id"


async def test_only_the_most_recent_sessions_keep_their_snapshots(h: Harness) -> None:
    token = await started(h, session="s-0")
    await h.store.save_session_snapshot(
        checkpoint(snapshot("first"), session_id="s-0", version=1, token=token)
    )
    for n in range(1, MAX_SESSIONS_PER_IDENTITY + 1):  # each a reset to a new session
        await h.store.upsert_continuity_record(record(session_id=f"s-{n}", gen=n), token)
        await h.store.save_session_snapshot(
            checkpoint(snapshot(f"gen{n}"), session_id=f"s-{n}", gen=n, version=1, token=token)
        )
    assert await h.store.load_session_snapshot("s-0") is None  # evicted with the 17th
    assert await h.store.load_session_snapshot("s-1") is not None
    other = await h.token("other")
    await h.store.upsert_continuity_record(record("other", "s-0"), other)  # s-0 is free


async def test_delete_removes_record_and_snapshots(h: Harness) -> None:
    token = await started(h)
    rev = await h.store.save_session_snapshot(checkpoint(snapshot("one"), version=1, token=token))
    await h.store.upsert_continuity_record(record(session_id="s-2", version=1), token)
    await h.store.save_session_snapshot(
        checkpoint(snapshot("two"), session_id="s-2", version=2, token=token)
    )
    assert (await h.store.load_session_snapshot("s-1")) is not None
    await h.store.delete_continuity_record(ID, token)
    assert await state_of(h) == Uninitialized()
    assert await h.store.load_session_snapshot("s-1") is None
    assert await h.store.load_session_snapshot("s-2") is None
    assert await h.store.resolve_record_by_session("s-2") is None
    assert not await h.store.delete_session_snapshot_if_current_revision("s-1", rev)
    assert (await h.store.health(ID)).last_checkpoint_version is None
    # A retry of the delete: the record is gone.
    err = await unchanged(
        h, lambda: h.store.delete_continuity_record(ID, token), ContinuityRecordNotFound
    )
    assert err.metadata["identity"] == ID
    # The identity can start over, and its sessions are free again.
    await h.store.upsert_continuity_record(record(session_id="s-1"), token)
    assert await state_of(h) == Ready(record(session_id="s-1"))


async def test_delete_of_unknown_identity_is_not_found(h: Harness) -> None:
    token = await h.token("ghost")
    await unchanged(
        h, lambda: h.store.delete_continuity_record("ghost", token), ContinuityRecordNotFound
    )


async def test_the_fence_survives_a_delete(h: Harness) -> None:
    old = await h.token(ID)
    new = await h.token(ID)
    await h.store.upsert_continuity_record(record(), new)
    await h.store.delete_continuity_record(ID, new)
    err = await unchanged(
        h, lambda: h.store.upsert_continuity_record(record(), old), StaleFencingToken
    )
    assert (err.metadata["presented"], err.metadata["current"]) == (str(old), str(new))
    assert await state_of(h) == Uninitialized()


# -- snapshots ---------------------------------------------------------------------------------


async def test_save_advances_the_record_and_stores_the_snapshot(h: Harness) -> None:
    token = await started(h, gen=4)
    data = b"\x00state\xff" * 100
    revision = await h.store.save_session_snapshot(
        checkpoint(SessionSnapshot(data), gen=4, version=7, token=token)
    )
    assert revision == sha(data)
    assert await state_of(h) == Ready(record(gen=4, version=7))
    assert await h.store.load_session_snapshot("s-1") == LoadedSnapshot(
        SessionSnapshot(data), revision, 4, 7
    )
    assert await h.store.resolve_record_by_session("s-1") == SessionRecord(
        record(gen=4, version=7), token, 7
    )
    assert (await h.store.health(ID)).last_checkpoint_version == 7
    await h.store.save_session_snapshot(checkpoint(snapshot("nine"), gen=4, version=9, token=token))
    loaded = await h.store.load_session_snapshot("s-1")
    assert loaded is not None and loaded.snapshot.data == b"nine" and loaded.checkpoint_version == 9


async def test_a_resent_save_succeeds_without_change(h: Harness) -> None:
    token = await started(h)
    first = await h.store.save_session_snapshot(
        checkpoint(snapshot("same"), version=1, token=token)
    )
    before = await h.dump()
    again = await h.store.save_session_snapshot(
        checkpoint(snapshot("same"), version=1, token=token)
    )
    assert again == first and await h.dump() == before
    # Same version, different content: not a retry but a stale write.
    err = await unchanged(
        h,
        lambda: h.store.save_session_snapshot(
            checkpoint(snapshot("other"), version=1, token=token)
        ),
        StaleCheckpointVersion,
    )
    assert (err.metadata["presented"], err.metadata["current"]) == ("1", "1")


async def test_save_needs_a_higher_checkpoint_version(h: Harness) -> None:
    token = await started(h)
    await h.store.save_session_snapshot(checkpoint(snapshot("five"), version=5, token=token))
    for version in (5, 4, 1):
        err = await unchanged(
            h,
            lambda v=version: h.store.save_session_snapshot(
                checkpoint(snapshot("x"), version=v, token=token)
            ),
            StaleCheckpointVersion,
        )
        assert err.metadata == {"identity": ID, "presented": str(version), "current": "5"}


async def test_save_needs_the_record_generation_and_session(h: Harness) -> None:
    token = await started(h, gen=1)
    err = await unchanged(
        h,
        lambda: h.store.save_session_snapshot(checkpoint(snapshot("x"), version=1, token=token)),
        GenerationMismatch,
    )
    assert (err.metadata["presented"], err.metadata["current"]) == ("0", "1")
    await unchanged(
        h,
        lambda: h.store.save_session_snapshot(
            checkpoint(snapshot("x"), gen=2, version=1, token=token)
        ),
        GenerationMismatch,
    )
    err = await unchanged(
        h,
        lambda: h.store.save_session_snapshot(
            checkpoint(snapshot("x"), session_id="s-other", gen=1, version=1, token=token)
        ),
        InvalidArgument,
    )
    assert err.metadata["field"] == "session_id"


async def test_save_needs_a_record(h: Harness) -> None:
    token = await h.token("nobody")
    err = await unchanged(
        h,
        lambda: h.store.save_session_snapshot(
            checkpoint(snapshot("x"), identity="nobody", version=1, token=token)
        ),
        ContinuityRecordNotFound,
    )
    assert err.metadata["identity"] == "nobody"


async def test_oversized_snapshot_is_refused(h: Harness) -> None:
    token = await started(h)
    err = await unchanged(
        h,
        lambda: h.store.save_session_snapshot(
            checkpoint(SessionSnapshot(b"x" * (SNAPSHOT_LIMIT + 1)), version=1, token=token)
        ),
        SnapshotTooLarge,
    )
    assert err.metadata == {"size": str(SNAPSHOT_LIMIT + 1), "limit": str(SNAPSHOT_LIMIT)}
    exact = SessionSnapshot(b"y" * SNAPSHOT_LIMIT)
    await h.store.save_session_snapshot(checkpoint(exact, version=1, token=token))
    loaded = await h.store.load_session_snapshot("s-1")
    assert loaded is not None and loaded.snapshot == exact


async def test_any_bytes_round_trip_unchanged(h: Harness) -> None:
    token = await started(h)
    payloads = [b"", bytes(range(256)), b"\x00" * 1000, "snapshot ✓ \u2028".encode(), b"MKS1"]
    for version, data in enumerate(payloads, start=1):
        revision = await h.store.save_session_snapshot(
            checkpoint(SessionSnapshot(data), version=version, token=token)
        )
        loaded = await h.store.load_session_snapshot("s-1")
        assert loaded == LoadedSnapshot(SessionSnapshot(data), revision, 0, version)
        assert await state_of(h) == Ready(record(version=version))


async def test_compare_and_delete_snapshot(h: Harness) -> None:
    token = await started(h)
    revision = await h.store.save_session_snapshot(
        checkpoint(snapshot("v1"), version=1, token=token)
    )
    assert not await h.store.delete_session_snapshot_if_current_revision("s-1", sha(b"other"))
    assert not await h.store.delete_session_snapshot_if_current_revision("s-unknown", revision)
    assert await h.store.load_session_snapshot("s-1") is not None
    await h.store.save_session_snapshot(checkpoint(snapshot("v2"), version=2, token=token))
    # The revision moved on: the old one no longer deletes anything.
    before = await h.dump()
    assert not await h.store.delete_session_snapshot_if_current_revision("s-1", revision)
    assert await h.dump() == before
    assert await h.store.delete_session_snapshot_if_current_revision("s-1", sha(b"v2"))
    assert await h.store.load_session_snapshot("s-1") is None
    assert not await h.store.delete_session_snapshot_if_current_revision("s-1", sha(b"v2"))
    # The record survives; it now points at a missing snapshot.
    assert failure_kind(await state_of(h)) is ContinuityFailureKind.SNAPSHOT_MISSING
    found = await h.store.resolve_record_by_session("s-1")
    assert found == SessionRecord(record(version=2), token, 0)


# -- Broken kinds ------------------------------------------------------------------------------


async def test_broken_snapshot_missing(h: Harness) -> None:
    token = await started(h)
    revision = await h.store.save_session_snapshot(
        checkpoint(snapshot("three"), version=3, token=token)
    )
    assert await h.store.delete_session_snapshot_if_current_revision("s-1", revision)
    state = await state_of(h)
    assert failure_kind(state) is ContinuityFailureKind.SNAPSHOT_MISSING
    assert state.failure.record == record(version=3) and state.failure.identity == ID
    assert "3" in state.failure.detail


async def _flip(h: Harness, key: bytes, index: int) -> None:
    stored = await h.raw_get(key)
    assert stored is not None
    data = bytearray(stored)
    data[index] ^= 0x01
    await h.raw_put(key, bytes(data))


async def test_broken_snapshot_corrupted_data(h: Harness) -> None:
    token = await started(h)
    await h.store.save_session_snapshot(
        checkpoint(snapshot("precious state"), version=1, token=token)
    )
    await _flip(h, snapshot_key(ID, "s-1"), -1)  # last byte of the data
    state = await state_of(h)
    assert failure_kind(state) is ContinuityFailureKind.SNAPSHOT_CORRUPTED
    assert state.failure.record == record(version=1)
    err = await unchanged(h, lambda: h.store.load_session_snapshot("s-1"), StoreCorruption)
    assert "SHA-256" in err.message
    # A new checkpoint replaces the corrupt one.
    await h.store.save_session_snapshot(checkpoint(snapshot("fresh"), version=2, token=token))
    assert await state_of(h) == Ready(record(version=2))


async def test_broken_snapshot_corrupted_header(h: Harness) -> None:
    token = await started(h)
    await h.store.save_session_snapshot(checkpoint(snapshot("state"), version=1, token=token))
    await _flip(h, snapshot_key(ID, "s-1"), 20)  # inside the header
    assert failure_kind(await state_of(h)) is ContinuityFailureKind.SNAPSHOT_CORRUPTED
    await unchanged(h, lambda: h.store.load_session_snapshot("s-1"), StoreCorruption)
    await unchanged(h, lambda: h.store.resolve_record_by_session("s-1"), StoreCorruption)


async def test_corrupt_record_is_broken_and_refuses_writes(h: Harness) -> None:
    token = await started(h)
    await h.raw_put(record_key(ID), b"MKR1garbage")
    state = await state_of(h)
    assert failure_kind(state) is ContinuityFailureKind.SNAPSHOT_CORRUPTED
    assert state.failure.record is None
    await unchanged(h, lambda: h.store.upsert_continuity_record(record(), token), StoreCorruption)
    await unchanged(
        h,
        lambda: h.store.save_session_snapshot(checkpoint(snapshot("x"), version=1, token=token)),
        StoreCorruption,
    )
    health = await h.store.health(ID)
    assert health.store_reachable and health.last_checkpoint_version is None


async def test_corrupt_session_binding_is_store_corruption(h: Harness) -> None:
    await started(h)
    await h.raw_put(session_key("s-1"), b"not an identity/")
    await unchanged(h, lambda: h.store.load_session_snapshot("s-1"), StoreCorruption)


async def test_broken_generation_mismatch(h: Harness) -> None:
    token = await started(h, gen=1)
    await h.store.save_session_snapshot(checkpoint(snapshot("gen1"), gen=1, version=4, token=token))
    # The record moves to generation 2 but keeps pointing at a checkpoint: the stored
    # snapshot is generation 1's.
    await h.store.upsert_continuity_record(record(gen=2, version=4), token)
    state = await state_of(h)
    assert failure_kind(state) is ContinuityFailureKind.GENERATION_MISMATCH
    assert state.failure.record == record(gen=2, version=4)


async def test_broken_store_unavailable(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    token = await started(h, "saved", "s-saved")
    await h.store.save_session_snapshot(
        checkpoint(snapshot("x"), identity="saved", session_id="s-saved", version=1, token=token)
    )
    await started(h, "fresh", "s-fresh")
    h.fail_snapshot_reads(monkeypatch)
    entries = dict(await h.store.resolve_many(["saved", "fresh", "none"]))
    assert failure_kind(entries["saved"]) is ContinuityFailureKind.STORE_UNAVAILABLE
    assert entries["saved"].failure.record == record("saved", "s-saved", version=1)
    assert entries["fresh"] == Ready(record("fresh", "s-fresh"))  # nothing to read
    assert entries["none"] == Uninitialized()


# -- fencing -----------------------------------------------------------------------------------


async def test_stale_writer_is_fenced_off_and_the_new_owner_is_intact(h: Harness) -> None:
    a = await h.token(ID, 5)
    await h.store.upsert_continuity_record(record(), a)
    await h.store.save_session_snapshot(checkpoint(snapshot("A1"), version=1, token=a))
    b = await h.token(ID, 9)
    assert b > a
    await h.store.upsert_continuity_record(record(version=1), b)
    await h.store.save_session_snapshot(checkpoint(snapshot("B2"), version=2, token=b))

    writes_of_a: list[Callable[[], Awaitable[Any]]] = [
        lambda: h.store.save_session_snapshot(checkpoint(snapshot("A3"), version=3, token=a)),
        lambda: h.store.save_session_snapshot(
            checkpoint(snapshot("A1"), version=1, token=a)
        ),  # a retry
        lambda: h.store.upsert_continuity_record(record(version=2), a),
        lambda: h.store.upsert_continuity_record(record(session_id="s-a", gen=1), a),
        lambda: h.store.delete_continuity_record(ID, a),
    ]
    for write in writes_of_a:
        err = await unchanged(h, write, StaleFencingToken)
        assert err.metadata == {"identity": ID, "presented": str(a), "current": str(b)}

    assert await state_of(h) == Ready(record(version=2))
    loaded = await h.store.load_session_snapshot("s-1")
    assert loaded is not None and loaded.snapshot.data == b"B2"
    assert await h.store.resolve_record_by_session("s-1") == SessionRecord(record(version=2), b, 2)
    await h.store.save_session_snapshot(
        checkpoint(snapshot("B3"), version=3, token=b)
    )  # B carries on


# -- bad input ---------------------------------------------------------------------------------


async def test_bad_input_is_refused_and_changes_nothing(h: Harness) -> None:
    token = await started(h)
    await h.store.save_session_snapshot(checkpoint(snapshot("ok"), version=1, token=token))
    s = h.store
    data = snapshot("x")
    cases: list[tuple[type, str | None, Callable[[], Awaitable[Any]]]] = [
        (
            InvalidIdentity,
            None,
            lambda: s.save_session_snapshot(checkpoint(data, identity="", version=2, token=token)),
        ),
        (
            InvalidIdentity,
            None,
            lambda: s.save_session_snapshot(
                checkpoint(data, identity="a b", version=2, token=token)
            ),
        ),
        (
            InvalidIdentity,
            None,
            lambda: s.save_session_snapshot(
                checkpoint(data, identity="a/b", version=2, token=token)
            ),
        ),
        (
            InvalidArgument,
            "session_id",
            lambda: s.save_session_snapshot(
                checkpoint(data, session_id="", version=2, token=token)
            ),
        ),
        (
            InvalidArgument,
            "session_id",
            lambda: s.save_session_snapshot(
                checkpoint(data, session_id="s 1", version=2, token=token)
            ),
        ),
        (
            InvalidArgument,
            "session_id",
            lambda: s.save_session_snapshot(
                checkpoint(data, session_id="s" * 300, version=2, token=token)
            ),
        ),
        (
            InvalidArgument,
            "checkpoint_version",
            lambda: s.save_session_snapshot(checkpoint(data, version=0, token=token)),
        ),
        (
            InvalidArgument,
            "checkpoint_version",
            lambda: s.save_session_snapshot(checkpoint(data, version=-3, token=token)),
        ),
        (
            InvalidArgument,
            "checkpoint_version",
            lambda: s.save_session_snapshot(checkpoint(data, version=2**63, token=token)),
        ),
        (
            InvalidArgument,
            "generation",
            lambda: s.save_session_snapshot(checkpoint(data, gen=-1, version=2, token=token)),
        ),
        (
            InvalidArgument,
            "fencing_token",
            lambda: s.save_session_snapshot(checkpoint(data, version=2, token=0)),
        ),
        (InvalidArgument, "fencing_token", lambda: s.upsert_continuity_record(record(), 0)),
        (InvalidIdentity, None, lambda: s.upsert_continuity_record(record("x y"), token)),
        (
            InvalidArgument,
            "record.agent_runtime_id",
            lambda: s.upsert_continuity_record(record(runtime_id="rt x"), token),
        ),
        (
            InvalidArgument,
            "record.session_id",
            lambda: s.upsert_continuity_record(record(session_id=""), token),
        ),
        (
            InvalidArgument,
            "record.generation",
            lambda: s.upsert_continuity_record(record(gen=-1), token),
        ),
        (
            InvalidArgument,
            "record.checkpoint_version",
            lambda: s.upsert_continuity_record(record(version=2**64), token),
        ),
        (InvalidIdentity, None, lambda: s.delete_continuity_record(" ", token)),
        (InvalidArgument, "fencing_token", lambda: s.delete_continuity_record(ID, -1)),
        (InvalidArgument, "session_id", lambda: s.load_session_snapshot("")),
        (InvalidArgument, "session_id", lambda: s.resolve_record_by_session("\x00")),
        (
            InvalidArgument,
            "session_id",
            lambda: s.delete_session_snapshot_if_current_revision("", sha(b"ok")),
        ),
        (
            InvalidArgument,
            "expected_current_revision",
            lambda: s.delete_session_snapshot_if_current_revision("s-1", "not-a-sha"),
        ),
        (
            InvalidArgument,
            "expected_current_revision",
            lambda: s.delete_session_snapshot_if_current_revision("s-1", sha(b"ok").upper()),
        ),
        (InvalidIdentity, None, lambda: s.health("bad/identity")),
    ]
    for error, field, action in cases:
        err = await unchanged(h, action, error)
        if field is not None:
            assert err.metadata["field"] == field, (field, err)
    assert await state_of(h) == Ready(record(version=1))


# -- health ------------------------------------------------------------------------------------


async def test_health_reports_a_truthful_durability_policy(h: Harness) -> None:
    assert isinstance(h.store, ContinuityStore)  # the port, whichever side of gRPC
    health = await h.store.health()
    assert health.store_reachable and health.last_checkpoint_version is None
    if "memory" in h.name:
        assert isinstance(health.durability_policy, BufferedExport)  # nothing survives exit
    else:
        assert health.durability_policy == SyncWriteThrough()
