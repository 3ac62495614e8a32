"""A watch that survives member failures without losing or repeating events.

Each (re)connection creates the watch at ``next_revision``: the revision after the last
event delivered, or after the last progress notification (which promises that every
earlier event was sent). A compacted ``next_revision`` ends the watch with
:class:`EtcdCompacted`: the caller must re-read state, not guess what it missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc

from mobkit.etcd.errors import (
    EtcdAuthError,
    EtcdCompacted,
    EtcdError,
    EtcdUnavailable,
    map_rpc_error,
)
from mobkit.etcd.ops import Key, to_bytes
from mobkit.gen.etcd.api.etcdserverpb import rpc_pb2
from mobkit.gen.etcd.api.mvccpb import kv_pb2

if TYPE_CHECKING:
    from mobkit.etcd.client import EtcdClient

log = logging.getLogger(__name__)

_RETRY_INITIAL = 0.05
_RETRY_MAX = 1.0


async def watch_events(
    client: EtcdClient,
    key: Key,
    range_end: Key | None = None,
    *,
    start_revision: int | None = None,
    prev_kv: bool = False,
    deletes_only: bool = False,
) -> AsyncIterator[kv_pb2.Event]:
    next_revision = start_revision or 0
    delay = _RETRY_INITIAL
    auth_retried = False
    while True:
        if client.closed:
            raise EtcdUnavailable("watch: client closed")
        stale_token = client._token
        call = client.watch_stub.Watch(
            metadata=client.auth_metadata(), wait_for_ready=client.wait_for_ready
        )
        try:
            await call.write(
                rpc_pb2.WatchRequest(
                    create_request=rpc_pb2.WatchCreateRequest(
                        key=to_bytes(key),
                        range_end=to_bytes(range_end) if range_end is not None else b"",
                        start_revision=next_revision,
                        progress_notify=True,
                        prev_kv=prev_kv,
                        filters=[rpc_pb2.WatchCreateRequest.NOPUT] if deletes_only else [],
                    )
                )
            )
            async for reply in call:
                if reply.compact_revision:
                    raise EtcdCompacted(
                        f"watch: revision {next_revision} was compacted "
                        f"(oldest available {reply.compact_revision})",
                        compact_revision=int(reply.compact_revision),
                    )
                if reply.canceled:
                    reason = reply.cancel_reason or "canceled by server"
                    if "auth" in reason or "permission denied" in reason:
                        raise EtcdAuthError(f"watch: {reason}")
                    raise EtcdError(f"watch: {reason}")
                if reply.created and next_revision == 0:
                    next_revision = reply.header.revision + 1
                delay = _RETRY_INITIAL
                auth_retried = False
                for event in reply.events:
                    next_revision = event.kv.mod_revision + 1
                    yield event
                if not reply.events and not reply.created and reply.header.revision:
                    next_revision = max(next_revision, reply.header.revision + 1)
            # The server closed the stream cleanly (e.g. a member shutting down).
            log.info("etcd watch stream ended; re-watching from %d", next_revision)
        except grpc.aio.AioRpcError as err:
            mapped = map_rpc_error(err, "Watch")
            if isinstance(mapped, EtcdAuthError) and not auth_retried and stale_token:
                auth_retried = True
                await client._reauthenticate(stale_token)
                continue
            if not isinstance(mapped, EtcdUnavailable) or client.closed:
                raise mapped from None
            log.info("etcd watch interrupted (%s); re-watching from %d", mapped, next_revision)
        except asyncio.InvalidStateError:
            log.info("etcd watch stream closed; re-watching from %d", next_revision)
        finally:
            call.cancel()
        await asyncio.sleep(delay)
        delay = min(delay * 2, _RETRY_MAX)
