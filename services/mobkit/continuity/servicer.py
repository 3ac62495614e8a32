"""gRPC servicer of ``mobkit.continuity.v1.ContinuityStoreService``: convert, call the
store, convert back. Errors are domain exceptions, translated by the scaffold's
interceptor through :data:`ERRORS`."""

from __future__ import annotations

import grpc

from mobkit.continuity.domain import ContinuityStore, check_resolve_entries
from mobkit.core import errors as e
from mobkit.core.identity import AgentIdentity, FencingToken, SessionId
from mobkit.core.types import Checkpoint
from mobkit.gen.continuity.v1 import continuity_service_pb2 as svc
from mobkit.gen.continuity.v1 import continuity_service_pb2_grpc as svc_grpc
from mobkit.server.errors import ErrorTable, service_errors
from mobkit.wire import continuity as wire

SERVICE_NAME = "mobkit.continuity.v1.ContinuityStoreService"

ERRORS: ErrorTable = service_errors(*e.CONTINUITY_ERRORS, e.StoreUnavailable)


class ContinuityServicer(svc_grpc.ContinuityStoreServiceServicer):
    def __init__(self, store: ContinuityStore) -> None:
        self.store = store

    async def ResolveMany(
        self, request: svc.ResolveManyRequest, context: grpc.aio.ServicerContext
    ) -> svc.ResolveManyResponse:
        identities = list(request.identities)
        entries = await self.store.resolve_many(identities)
        return wire.entries_to_proto(check_resolve_entries(identities, entries))

    async def LoadSessionSnapshot(
        self, request: svc.LoadSessionSnapshotRequest, context: grpc.aio.ServicerContext
    ) -> svc.LoadSessionSnapshotResponse:
        return wire.loaded_to_proto(await self.store.load_session_snapshot(request.session_id))

    async def SaveSessionSnapshot(
        self, request: svc.SaveSessionSnapshotRequest, context: grpc.aio.ServicerContext
    ) -> svc.SaveSessionSnapshotResponse:
        if not request.HasField("snapshot"):
            raise e.InvalidArgument("snapshot", "is required")
        checkpoint = Checkpoint(
            identity=AgentIdentity(request.identity),
            session_id=SessionId(request.session_id),
            generation=request.generation,
            checkpoint_version=request.checkpoint_version,
            fencing_token=FencingToken(request.fencing_token),
            snapshot=wire.snapshot_from_proto(request.snapshot),
        )
        revision = await self.store.save_session_snapshot(
            checkpoint,
            wire.receipt_from_proto(request.receipt) if request.HasField("receipt") else None,
        )
        return svc.SaveSessionSnapshotResponse(revision=revision)

    async def LoadReceipt(
        self, request: svc.LoadReceiptRequest, context: grpc.aio.ServicerContext
    ) -> svc.LoadReceiptResponse:
        found = await self.store.load_receipt(request.identity, request.idempotency_key)
        return wire.stored_receipt_to_proto(found)

    async def UpsertContinuityRecord(
        self, request: svc.UpsertContinuityRecordRequest, context: grpc.aio.ServicerContext
    ) -> svc.UpsertContinuityRecordResponse:
        if not request.HasField("record"):
            raise e.InvalidArgument("record", "is required")
        await self.store.upsert_continuity_record(
            wire.record_from_proto(request.record), FencingToken(request.fencing_token)
        )
        return svc.UpsertContinuityRecordResponse()

    async def DeleteContinuityRecord(
        self, request: svc.DeleteContinuityRecordRequest, context: grpc.aio.ServicerContext
    ) -> svc.DeleteContinuityRecordResponse:
        await self.store.delete_continuity_record(
            request.identity, FencingToken(request.fencing_token)
        )
        return svc.DeleteContinuityRecordResponse()

    async def DeleteSessionSnapshotIfCurrentRevision(
        self,
        request: svc.DeleteSessionSnapshotIfCurrentRevisionRequest,
        context: grpc.aio.ServicerContext,
    ) -> svc.DeleteSessionSnapshotIfCurrentRevisionResponse:
        deleted = await self.store.delete_session_snapshot_if_current_revision(
            request.session_id, request.expected_current_revision
        )
        return svc.DeleteSessionSnapshotIfCurrentRevisionResponse(deleted=deleted)

    async def ResolveRecordBySession(
        self, request: svc.ResolveRecordBySessionRequest, context: grpc.aio.ServicerContext
    ) -> svc.ResolveRecordBySessionResponse:
        found = await self.store.resolve_record_by_session(request.session_id)
        return wire.session_record_to_proto(found)

    async def GetContinuityHealth(
        self, request: svc.GetContinuityHealthRequest, context: grpc.aio.ServicerContext
    ) -> svc.GetContinuityHealthResponse:
        identity = request.identity if request.HasField("identity") else None
        health = await self.store.health(identity)
        return svc.GetContinuityHealthResponse(health=wire.health_to_proto(health))
