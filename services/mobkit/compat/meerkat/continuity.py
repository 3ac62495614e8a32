"""``ContinuityStoreAdapter``: Meerkat MobKit's ``ContinuityStoreProvider`` over MobKit's
ContinuityStoreService.

Every write carries the caller's fencing token and is checked by the store in the
same atomic step as the write (on etcd, also against the lease key's
``create_revision``): a stale holder's write raises ``StaleFencingToken``.

Where the SDK's contract and MobKit's store differ, the adapter bridges them:

* ``upsert_continuity_record`` must never rewind ``checkpoint_version`` when a session
  is rebound, and must succeed. MobKit's store refuses a rewind within a generation
  (``StaleCheckpointVersion``, which reports the stored version) instead of keeping
  the larger version; the adapter then repeats the upsert at the stored version.
  That stays fenced: each attempt is the store's own fenced compare-and-set with the
  caller's token (checked first, so a stale caller learns it is stale), and the only
  thing the adapter changes is to ask for the version the store already holds;
* ``delete_continuity_record`` of a record that is already gone succeeds (the SDK's
  stores treat it so; MobKit's says ``CONTINUITY_RECORD_NOT_FOUND``). The fence is
  checked before existence, so a stale token still raises;
* ``delete_session_snapshot_if_current_revision``: MobKit's revision is the SHA-256 of
  the snapshot bytes; Meerkat's is ``row-sha256:<SHA-256 of the serialised session>``.
  The digest is compared against the stored bytes, so it matches only when the
  snapshot is exactly that serialisation; any other form answers False (the SDK's
  "cannot delete"), never a wrong deletion.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import grpc
from meerkat_mobkit import identity_first_providers as sdk

from mobkit.compat.meerkat import convert
from mobkit.compat.meerkat.errors import UnexpectedAnswer, reasons_in_messages
from mobkit.continuity.client import GrpcContinuityStore
from mobkit.core.errors import ContinuityRecordNotFound, StaleCheckpointVersion
from mobkit.core.identity import AgentIdentity, FencingToken, SessionId
from mobkit.core.types import Checkpoint, SessionSnapshot

UPSERT_ATTEMPTS = 5
"""Upserts repeated at the stored version before giving up: each repeat means a save
by the current owner advanced the version in between, which is rare."""

MEERKAT_REVISION_PREFIX = "row-sha256:"
_HEX = frozenset("0123456789abcdef")


class ContinuityStoreAdapter:
    """Continuity from a MobKit ContinuityStoreService."""

    def __init__(self, client: GrpcContinuityStore) -> None:
        self._client = client

    @classmethod
    def from_channel(
        cls, channel: grpc.aio.Channel, *, timeout: float = 30.0
    ) -> ContinuityStoreAdapter:
        return cls(GrpcContinuityStore(channel, timeout=timeout))

    async def resolve_many(self, identities: list[str]) -> dict[str, sdk.ContinuityResolveState]:
        """One entry per identity (the client refuses an incomplete answer)."""
        with reasons_in_messages():
            entries = await self._client.resolve_many(identities)
            return {identity: convert.resolve_state_to_sdk(state) for identity, state in entries}

    async def load_session_snapshot(self, session_id: str) -> sdk.SessionSnapshot | None:
        with reasons_in_messages():
            loaded = await self._client.load_session_snapshot(session_id)
            return sdk.SessionSnapshot(loaded.snapshot.data) if loaded is not None else None

    async def resolve_record_by_session(
        self, session_id: str
    ) -> tuple[sdk.ContinuityRecord, int, int] | None:
        """``(record, fencing_token, checkpoint_version)``: the highest token that wrote
        the record, and the version the session's next checkpoint must exceed (the SDK's
        meaning; Meerkat's own store answers the larger of the record's version and the
        session's newest snapshot's). MobKit's RPC answers the newest snapshot's version
        (0: none yet); a save must exceed the record's version too, so the adapter
        answers the larger. None only when the store answered that no record is bound
        to the session; a store that cannot answer raises (``BACKEND_UNAVAILABLE``, ...)."""
        with reasons_in_messages():
            found = await self._client.resolve_record_by_session(session_id)
            if found is None:
                return None
            if found.record.session_id != session_id:
                raise UnexpectedAnswer(
                    f"asked for session {session_id!r}, got {found.record.session_id!r}"
                )
            return (
                convert.record_to_sdk(found.record),
                found.fencing_token,
                max(found.checkpoint_version, found.record.checkpoint_version),
            )

    async def save_session_snapshot(
        self,
        identity: str,
        session_id: str,
        generation: int,
        version: int,
        fencing_token: int,
        snapshot: sdk.SessionSnapshot,
    ) -> None:
        with reasons_in_messages():
            await self._client.save_session_snapshot(
                Checkpoint(
                    identity=AgentIdentity(identity),
                    session_id=SessionId(session_id),
                    generation=generation,
                    checkpoint_version=version,
                    fencing_token=FencingToken(fencing_token),
                    snapshot=SessionSnapshot(snapshot.data),
                )
            )

    async def upsert_continuity_record(
        self, record: sdk.ContinuityRecord, fencing_token: int
    ) -> None:
        with reasons_in_messages():
            ours = convert.record_from_sdk(record)
            for attempt in range(UPSERT_ATTEMPTS):
                try:
                    await self._client.upsert_continuity_record(ours, FencingToken(fencing_token))
                    return
                except StaleCheckpointVersion as exc:
                    stored = getattr(exc, "current", None)
                    if (
                        attempt + 1 == UPSERT_ATTEMPTS
                        or not isinstance(stored, int)
                        or stored <= ours.checkpoint_version
                    ):
                        raise
                    ours = dataclasses.replace(ours, checkpoint_version=stored)

    async def delete_continuity_record(self, identity: str, fencing_token: int) -> None:
        with reasons_in_messages():
            try:
                await self._client.delete_continuity_record(identity, FencingToken(fencing_token))
            except ContinuityRecordNotFound:
                return  # already gone; the token passed the fence (checked first)

    async def delete_session_snapshot_if_current_revision(
        self, session_id: str, expected_current_revision: str
    ) -> bool:
        with reasons_in_messages():
            digest = _sha256_hex(expected_current_revision)
            if digest is None:
                return False
            return await self._client.delete_session_snapshot_if_current_revision(
                session_id, digest
            )


def _sha256_hex(revision: str) -> str | None:
    """The SHA-256 hex digest a revision names (MobKit's or Meerkat's form), else None."""
    if not isinstance(revision, str):
        return None
    digest = revision.removeprefix(MEERKAT_REVISION_PREFIX)
    return digest if len(digest) == 64 and set(digest) <= _HEX else None


if TYPE_CHECKING:

    def _conforms(adapter: ContinuityStoreAdapter) -> sdk.ContinuityStoreProvider:
        return adapter
