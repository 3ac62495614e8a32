"""Round trips of ``mobkit.continuity.v1`` messages through :mod:`mobkit.wire.continuity`,
including through serialized bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobkit.continuity.domain import LoadedSnapshot, SessionRecord
from mobkit.core.errors import InvalidArgument
from mobkit.core.identity import AgentIdentity, AgentRuntimeId, SessionId
from mobkit.core.types import (
    AsyncReplicated,
    Broken,
    BufferedExport,
    ContinuityFailure,
    ContinuityFailureKind,
    ContinuityHealth,
    ContinuityRecord,
    Ready,
    SessionSnapshot,
    SyncWriteThrough,
    Uninitialized,
)
from mobkit.gen.continuity.v1 import continuity_pb2 as pb
from mobkit.gen.continuity.v1 import continuity_service_pb2 as svc
from mobkit.wire import continuity as wire

U64 = st.integers(min_value=0, max_value=2**64 - 1)
names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc")), min_size=1, max_size=20
).filter(lambda s: "/" not in s)

records = st.builds(
    ContinuityRecord,
    identity=names.map(AgentIdentity),
    agent_runtime_id=names.map(AgentRuntimeId),
    session_id=names.map(SessionId),
    generation=U64,
    checkpoint_version=U64,
)
failures = st.builds(
    ContinuityFailure,
    identity=names.map(AgentIdentity),
    kind=st.sampled_from(list(ContinuityFailureKind)),
    record=st.none() | records,
    detail=st.text(max_size=50),
)
states = st.one_of(st.just(Uninitialized()), records.map(Ready), failures.map(Broken))
policies = st.one_of(
    st.just(SyncWriteThrough()), st.just(AsyncReplicated()), U64.map(BufferedExport)
)


def reparse(msg, cls):  # type: ignore[no-untyped-def]
    return cls.FromString(msg.SerializeToString())


@given(records)
def test_record_round_trip(record: ContinuityRecord) -> None:
    assert (
        wire.record_from_proto(reparse(wire.record_to_proto(record), pb.ContinuityRecord)) == record
    )


@given(st.lists(st.tuples(names.map(AgentIdentity), states), max_size=8))
def test_resolve_entries_round_trip(entries: list) -> None:  # type: ignore[type-arg]
    msg = reparse(wire.entries_to_proto(entries), svc.ResolveManyResponse)
    assert wire.entries_from_proto(msg) == entries


@given(
    st.none()
    | st.builds(
        LoadedSnapshot,
        snapshot=st.binary(max_size=200).map(SessionSnapshot),
        revision=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
        generation=U64,
        checkpoint_version=U64,
    )
)
def test_loaded_snapshot_round_trip(loaded: LoadedSnapshot | None) -> None:
    msg = reparse(wire.loaded_to_proto(loaded), svc.LoadSessionSnapshotResponse)
    assert wire.loaded_from_proto(msg) == loaded


def test_an_empty_snapshot_is_still_a_snapshot() -> None:
    loaded = LoadedSnapshot(SessionSnapshot(b""), "e3b0" + "0" * 60, 0, 1)
    msg = reparse(wire.loaded_to_proto(loaded), svc.LoadSessionSnapshotResponse)
    assert wire.loaded_from_proto(msg) == loaded


@given(st.none() | st.builds(SessionRecord, records, U64, U64))
def test_session_record_round_trip(found: SessionRecord | None) -> None:
    msg = reparse(wire.session_record_to_proto(found), svc.ResolveRecordBySessionResponse)
    assert wire.session_record_from_proto(msg) == found


@given(st.builds(ContinuityHealth, st.booleans(), policies, st.none() | U64))
def test_health_round_trip(health: ContinuityHealth) -> None:
    msg = reparse(wire.health_to_proto(health), pb.ContinuityHealth)
    assert wire.health_from_proto(msg) == health


def test_unset_cases_are_refused() -> None:
    with pytest.raises(InvalidArgument):
        wire.state_from_proto(pb.ContinuityResolveState())
    with pytest.raises(InvalidArgument):
        wire.policy_from_proto(pb.DurabilityPolicy())
    with pytest.raises(InvalidArgument):
        wire.failure_kind_from_proto(pb.CONTINUITY_FAILURE_KIND_UNSPECIFIED)
