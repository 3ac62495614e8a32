"""``GrpcContinuityStore``: the :class:`~mobkit.continuity.domain.ContinuityStore` port over
gRPC, raising the same domain exceptions as the in-process stores.

Numbers are range-checked here (a negative one cannot even be encoded as uint64);
everything else is validated by the service.

Calls that are safe to repeat (reads, upserts, saves: a re-sent save that committed
succeeds unchanged) are retried on UNAVAILABLE; deletes are not (a repeated record
delete answers CONTINUITY_RECORD_NOT_FOUND, so the caller must decide).

Saves made at the same moment (in one turn of the event loop: concurrent callers
resumed together) go as one ``SaveSessionSnapshots`` call (see
:mod:`mobkit.continuity.save_batch`); a lone save goes as ``SaveSessionSnapshot``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc
from google.rpc import status_pb2

from mobkit.continuity.domain import (
    UNBOUNDED_LOSS_WINDOW_MS,
    IncompleteResolve,
    LoadedSnapshot,
    ResolveEntry,
    SessionRecord,
    StoredReceipt,
    TurnReceipt,
    check_counter,
    check_fencing_token,
    check_resolve_entries,
)
from mobkit.continuity.save_batch import SaveBatcher
from mobkit.core.errors import BackendUnavailable, InvalidArgument, MobKitError, StoreUnavailable
from mobkit.core.identity import FencingToken
from mobkit.core.types import (
    BufferedExport,
    Checkpoint,
    ContinuityHealth,
    ContinuityRecord,
    DurabilityPolicy,
)
from mobkit.gen.continuity.v1 import continuity_service_pb2 as svc
from mobkit.gen.continuity.v1 import continuity_service_pb2_grpc as svc_grpc
from mobkit.wire import continuity as wire
from mobkit.wire.calls import Calls, decoder
from mobkit.wire.errors import error_from_status

log = logging.getLogger(__name__)

RESOLVE_BATCH = 4096
"""Identities per ResolveMany call (a Broken entry is a few hundred bytes at most)."""


class GrpcContinuityStore:
    """A remote continuity store. The channel belongs to the caller."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout: float | None = 30.0,
        retries: int = 2,
        retry_backoff: float = 0.1,
    ) -> None:
        self._stub = svc_grpc.ContinuityStoreServiceStub(channel)
        self._call = Calls(
            decoder(StoreUnavailable, IncompleteResolve),
            timeout=timeout,
            retries=retries,
            backoff=retry_backoff,
        )
        self._policy: DurabilityPolicy | None = None
        self._saves = SaveBatcher(self._save_one, self._save_many)

    async def resolve_many(self, identities: Sequence[str]) -> list[ResolveEntry]:
        """Large batches go out as several calls of at most ``RESOLVE_BATCH`` identities,
        so every reply stays well under gRPC's default 4 MiB message limit."""
        requested = list(identities)
        if not requested:
            return []
        if len(requested) > RESOLVE_BATCH and len(set(requested)) != len(requested):
            raise InvalidArgument("identities", "duplicate identities in one request")
        entries: list[ResolveEntry] = []
        for start in range(0, len(requested), RESOLVE_BATCH):
            batch = requested[start : start + RESOLVE_BATCH]
            reply = await self._call(
                self._stub.ResolveMany, svc.ResolveManyRequest(identities=batch), idempotent=True
            )
            entries += check_resolve_entries(batch, wire.entries_from_proto(reply))
        return entries

    async def load_session_snapshot(self, session_id: str) -> LoadedSnapshot | None:
        reply = await self._call(
            self._stub.LoadSessionSnapshot,
            svc.LoadSessionSnapshotRequest(session_id=session_id),
            idempotent=True,
        )
        return wire.loaded_from_proto(reply)

    async def save_session_snapshot(
        self, checkpoint: Checkpoint, receipt: TurnReceipt | None = None
    ) -> str:
        request = svc.SaveSessionSnapshotRequest(
            identity=checkpoint.identity,
            session_id=checkpoint.session_id,
            generation=check_counter("generation", checkpoint.generation),
            checkpoint_version=check_counter(
                "checkpoint_version", checkpoint.checkpoint_version, minimum=1
            ),
            fencing_token=check_fencing_token(checkpoint.fencing_token),
            snapshot=wire.snapshot_to_proto(checkpoint.snapshot),
        )
        if receipt is not None:
            request.receipt.CopyFrom(wire.receipt_to_proto(receipt))
        return await self._saves.save(request)

    @property
    def batch_calls_sent(self) -> int:
        """``SaveSessionSnapshots`` calls made so far (tests and benchmarks read it)."""
        return self._saves.batches

    async def _save_one(self, request: svc.SaveSessionSnapshotRequest) -> str:
        reply = await self._call(self._stub.SaveSessionSnapshot, request, idempotent=True)
        return str(reply.revision)

    async def _save_many(
        self, requests: list[svc.SaveSessionSnapshotRequest]
    ) -> list[str | MobKitError]:
        batch = svc.SaveSessionSnapshotsRequest(saves=requests)
        reply = await self._call(self._stub.SaveSessionSnapshots, batch, idempotent=True)
        if len(reply.outcomes) != len(requests):
            raise StoreUnavailable(
                f"SaveSessionSnapshots answered {len(reply.outcomes)} outcomes for "
                f"{len(requests)} saves",
                backend="remote service",
            )
        return [
            str(o.saved.revision)
            if o.WhichOneof("outcome") == "saved"
            else error_from_status(
                status_pb2.Status.FromString(o.error), StoreUnavailable, IncompleteResolve
            )
            for o in reply.outcomes
        ]

    async def load_receipt(self, identity: str, idempotency_key: str) -> StoredReceipt | None:
        request = svc.LoadReceiptRequest(identity=identity, idempotency_key=idempotency_key)
        reply = await self._call(self._stub.LoadReceipt, request, idempotent=True)
        return wire.stored_receipt_from_proto(idempotency_key, reply)

    async def upsert_continuity_record(
        self, record: ContinuityRecord, fencing_token: FencingToken
    ) -> None:
        check_counter("record.generation", record.generation)
        check_counter("record.checkpoint_version", record.checkpoint_version)
        request = svc.UpsertContinuityRecordRequest(
            record=wire.record_to_proto(record), fencing_token=check_fencing_token(fencing_token)
        )
        await self._call(self._stub.UpsertContinuityRecord, request, idempotent=True)

    async def delete_continuity_record(self, identity: str, fencing_token: FencingToken) -> None:
        request = svc.DeleteContinuityRecordRequest(
            identity=identity, fencing_token=check_fencing_token(fencing_token)
        )
        await self._call(self._stub.DeleteContinuityRecord, request, idempotent=False)

    async def delete_session_snapshot_if_current_revision(
        self, session_id: str, expected_current_revision: str
    ) -> bool:
        request = svc.DeleteSessionSnapshotIfCurrentRevisionRequest(
            session_id=session_id, expected_current_revision=expected_current_revision
        )
        reply = await self._call(
            self._stub.DeleteSessionSnapshotIfCurrentRevision, request, idempotent=False
        )
        return bool(reply.deleted)

    async def resolve_record_by_session(self, session_id: str) -> SessionRecord | None:
        reply = await self._call(
            self._stub.ResolveRecordBySession,
            svc.ResolveRecordBySessionRequest(session_id=session_id),
            idempotent=True,
        )
        return wire.session_record_from_proto(reply)

    async def health(self, identity: str | None = None) -> ContinuityHealth:
        """The service's answer; if the service itself cannot be reached,
        ``store_reachable=False`` with the policy it last reported (before any answer,
        the weakest promise: an unbounded loss window)."""
        request = svc.GetContinuityHealthRequest()
        if identity is not None:
            request.identity = identity
        try:
            reply = await self._call(self._stub.GetContinuityHealth, request, idempotent=True)
        except BackendUnavailable as exc:
            log.warning("continuity service unreachable: %s", exc)
            policy = self._policy or BufferedExport(UNBOUNDED_LOSS_WINDOW_MS)
            return ContinuityHealth(False, policy, None)
        health = wire.health_from_proto(reply.health)
        self._policy = health.durability_policy
        return health
