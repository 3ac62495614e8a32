"""Proto <-> domain conversion for ``mobkit.continuity.v1`` messages.

Conversion only: the store validates values (identities, counters, session ids), so a
servicer passes what it received and the store refuses it with a clear error.
"""

from __future__ import annotations

from mobkit.continuity.domain import (
    LoadedSnapshot,
    ResolveEntry,
    SessionRecord,
    StoredReceipt,
    TurnReceipt,
)
from mobkit.core.errors import InvalidArgument
from mobkit.core.identity import AgentIdentity, AgentRuntimeId, FencingToken, SessionId
from mobkit.core.types import (
    AsyncReplicated,
    Broken,
    BufferedExport,
    ContinuityFailure,
    ContinuityFailureKind,
    ContinuityHealth,
    ContinuityRecord,
    ContinuityResolveState,
    DurabilityPolicy,
    Ready,
    SessionSnapshot,
    SyncWriteThrough,
    Uninitialized,
)
from mobkit.gen.continuity.v1 import continuity_pb2 as pb
from mobkit.gen.continuity.v1 import continuity_service_pb2 as svc

_KINDS = {
    ContinuityFailureKind.SNAPSHOT_MISSING: pb.CONTINUITY_FAILURE_KIND_SNAPSHOT_MISSING,
    ContinuityFailureKind.SNAPSHOT_CORRUPTED: pb.CONTINUITY_FAILURE_KIND_SNAPSHOT_CORRUPTED,
    ContinuityFailureKind.GENERATION_MISMATCH: pb.CONTINUITY_FAILURE_KIND_GENERATION_MISMATCH,
    ContinuityFailureKind.STORE_UNAVAILABLE: pb.CONTINUITY_FAILURE_KIND_STORE_UNAVAILABLE,
}
_KINDS_BACK = {v: k for k, v in _KINDS.items()}


# -- records ------------------------------------------------------------------------------


def record_to_proto(record: ContinuityRecord) -> pb.ContinuityRecord:
    return pb.ContinuityRecord(
        identity=record.identity,
        agent_runtime_id=record.agent_runtime_id,
        session_id=record.session_id,
        generation=record.generation,
        checkpoint_version=record.checkpoint_version,
    )


def record_from_proto(msg: pb.ContinuityRecord) -> ContinuityRecord:
    return ContinuityRecord(
        identity=AgentIdentity(msg.identity),
        agent_runtime_id=AgentRuntimeId(msg.agent_runtime_id),
        session_id=SessionId(msg.session_id),
        generation=msg.generation,
        checkpoint_version=msg.checkpoint_version,
    )


# -- resolve states ---------------------------------------------------------------------


def failure_kind_to_proto(kind: ContinuityFailureKind) -> pb.ContinuityFailureKind.ValueType:
    return _KINDS[kind]


def failure_kind_from_proto(value: pb.ContinuityFailureKind.ValueType) -> ContinuityFailureKind:
    kind = _KINDS_BACK.get(value)
    if kind is None:
        raise InvalidArgument("failure.kind", f"unknown continuity failure kind {value}")
    return kind


def failure_to_proto(failure: ContinuityFailure) -> pb.ContinuityFailure:
    msg = pb.ContinuityFailure(
        identity=failure.identity, kind=failure_kind_to_proto(failure.kind), detail=failure.detail
    )
    if failure.record is not None:
        msg.record.CopyFrom(record_to_proto(failure.record))
    return msg


def failure_from_proto(msg: pb.ContinuityFailure) -> ContinuityFailure:
    return ContinuityFailure(
        identity=AgentIdentity(msg.identity),
        kind=failure_kind_from_proto(msg.kind),
        record=record_from_proto(msg.record) if msg.HasField("record") else None,
        detail=msg.detail,
    )


def state_to_proto(state: ContinuityResolveState) -> pb.ContinuityResolveState:
    if isinstance(state, Ready):
        return pb.ContinuityResolveState(
            ready=pb.ContinuityResolveState.Ready(record=record_to_proto(state.record))
        )
    if isinstance(state, Broken):
        return pb.ContinuityResolveState(
            broken=pb.ContinuityResolveState.Broken(failure=failure_to_proto(state.failure))
        )
    return pb.ContinuityResolveState(uninitialized=pb.ContinuityResolveState.Uninitialized())


def state_from_proto(msg: pb.ContinuityResolveState) -> ContinuityResolveState:
    case = msg.WhichOneof("state")
    if case == "uninitialized":
        return Uninitialized()
    if case == "ready":
        return Ready(record_from_proto(msg.ready.record))
    if case == "broken":
        return Broken(failure_from_proto(msg.broken.failure))
    raise InvalidArgument("state", "ContinuityResolveState has no case set")


def entries_to_proto(entries: list[ResolveEntry]) -> svc.ResolveManyResponse:
    return svc.ResolveManyResponse(
        entries=[
            svc.ContinuityResolveEntry(identity=identity, state=state_to_proto(state))
            for identity, state in entries
        ]
    )


def entries_from_proto(msg: svc.ResolveManyResponse) -> list[ResolveEntry]:
    return [(AgentIdentity(e.identity), state_from_proto(e.state)) for e in msg.entries]


# -- snapshots ----------------------------------------------------------------------------


def snapshot_to_proto(snapshot: SessionSnapshot) -> pb.SessionSnapshot:
    return pb.SessionSnapshot(data=snapshot.data)


def snapshot_from_proto(msg: pb.SessionSnapshot) -> SessionSnapshot:
    return SessionSnapshot(bytes(msg.data))


def loaded_to_proto(loaded: LoadedSnapshot | None) -> svc.LoadSessionSnapshotResponse:
    if loaded is None:
        return svc.LoadSessionSnapshotResponse()
    return svc.LoadSessionSnapshotResponse(
        snapshot=snapshot_to_proto(loaded.snapshot),
        revision=loaded.revision,
        checkpoint_version=loaded.checkpoint_version,
        generation=loaded.generation,
    )


def loaded_from_proto(msg: svc.LoadSessionSnapshotResponse) -> LoadedSnapshot | None:
    if not msg.HasField("snapshot"):
        return None
    return LoadedSnapshot(
        snapshot_from_proto(msg.snapshot), msg.revision, msg.generation, msg.checkpoint_version
    )


def receipt_to_proto(receipt: TurnReceipt) -> svc.TurnReceipt:
    return svc.TurnReceipt(idempotency_key=receipt.idempotency_key, data=receipt.data)


def receipt_from_proto(msg: svc.TurnReceipt) -> TurnReceipt:
    return TurnReceipt(msg.idempotency_key, bytes(msg.data))


def stored_receipt_to_proto(found: StoredReceipt | None) -> svc.LoadReceiptResponse:
    if found is None:
        return svc.LoadReceiptResponse()
    reply = svc.LoadReceiptResponse(found=True, data=found.data)
    reply.expires_at.FromMilliseconds(found.expires_at_ms)
    return reply


def stored_receipt_from_proto(
    idempotency_key: str, msg: svc.LoadReceiptResponse
) -> StoredReceipt | None:
    if not msg.found:
        return None
    return StoredReceipt(idempotency_key, bytes(msg.data), msg.expires_at.ToMilliseconds())


def session_record_to_proto(found: SessionRecord | None) -> svc.ResolveRecordBySessionResponse:
    if found is None:
        return svc.ResolveRecordBySessionResponse()
    return svc.ResolveRecordBySessionResponse(
        record=record_to_proto(found.record),
        fencing_token=found.fencing_token,
        checkpoint_version=found.checkpoint_version,
    )


def session_record_from_proto(msg: svc.ResolveRecordBySessionResponse) -> SessionRecord | None:
    if not msg.HasField("record"):
        return None
    return SessionRecord(
        record_from_proto(msg.record), FencingToken(msg.fencing_token), msg.checkpoint_version
    )


# -- health -------------------------------------------------------------------------------


def policy_to_proto(policy: DurabilityPolicy) -> pb.DurabilityPolicy:
    if isinstance(policy, SyncWriteThrough):
        return pb.DurabilityPolicy(sync_write_through=pb.DurabilityPolicy.SyncWriteThrough())
    if isinstance(policy, AsyncReplicated):
        return pb.DurabilityPolicy(async_replicated=pb.DurabilityPolicy.AsyncReplicated())
    return pb.DurabilityPolicy(
        buffered_export=pb.DurabilityPolicy.BufferedExport(
            max_loss_window_ms=policy.max_loss_window_ms
        )
    )


def policy_from_proto(msg: pb.DurabilityPolicy) -> DurabilityPolicy:
    case = msg.WhichOneof("policy")
    if case == "sync_write_through":
        return SyncWriteThrough()
    if case == "async_replicated":
        return AsyncReplicated()
    if case == "buffered_export":
        return BufferedExport(msg.buffered_export.max_loss_window_ms)
    raise InvalidArgument("durability_policy", "DurabilityPolicy has no case set")


def health_to_proto(health: ContinuityHealth) -> pb.ContinuityHealth:
    msg = pb.ContinuityHealth(
        store_reachable=health.store_reachable,
        durability_policy=policy_to_proto(health.durability_policy),
    )
    if health.last_checkpoint_version is not None:
        msg.last_checkpoint_version = health.last_checkpoint_version
    return msg


def health_from_proto(msg: pb.ContinuityHealth) -> ContinuityHealth:
    return ContinuityHealth(
        store_reachable=msg.store_reachable,
        durability_policy=policy_from_proto(msg.durability_policy),
        last_checkpoint_version=(
            msg.last_checkpoint_version if msg.HasField("last_checkpoint_version") else None
        ),
    )
