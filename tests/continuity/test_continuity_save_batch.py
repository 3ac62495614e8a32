"""Saves made at the same moment: through gRPC they share one SaveSessionSnapshots call,
and every save keeps its own outcome (a stale fencing token fails that save only), on
every backend (fixture ``h``) and against a service without the batch call."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from continuity_support import Harness, checkpoint, record, snapshot

from mobkit.continuity.client import GrpcContinuityStore
from mobkit.continuity.memory import MemoryContinuityStore
from mobkit.continuity.servicer import ERRORS, SERVICE_NAME, ContinuityServicer
from mobkit.core.errors import InvalidIdentity, StaleFencingToken
from mobkit.core.types import Ready
from mobkit.gen.continuity.v1 import continuity_service_pb2_grpc as svc_grpc
from mobkit.server.interceptor import ServiceCallInterceptor

pytestmark = pytest.mark.timeout(60)

IDS = [f"batch-{i}" for i in range(8)]
STALE = IDS[3]


async def _saves_with_one_stale(store: Any, tokens: dict[str, int], stale: int) -> list[Any]:
    """Every identity saves version 1 at once, STALE with its superseded token, plus a
    save naming an invalid identity."""

    async def one(identity: str) -> str:
        token = stale if identity == STALE else tokens.get(identity, 1)
        data = snapshot(f"{identity} v1")
        result: str = await store.save_session_snapshot(
            checkpoint(data, version=1, token=token, identity=identity, session_id=f"s-{identity}")
        )
        return result

    return await asyncio.gather(
        *(one(i) for i in [*IDS, "not an identity!"]), return_exceptions=True
    )


def _check_outcomes(outcomes: list[Any], tokens: dict[str, int], stale: int) -> None:
    for identity, outcome in zip(IDS, outcomes, strict=False):
        if identity == STALE:
            assert isinstance(outcome, StaleFencingToken), outcome
            assert outcome.metadata["identity"] == STALE
            assert int(outcome.metadata["presented"]) == stale
            assert int(outcome.metadata["current"]) == tokens[STALE]
        else:
            assert isinstance(outcome, str) and len(outcome) == 64, outcome
    assert isinstance(outcomes[-1], InvalidIdentity), outcomes[-1]


async def test_concurrent_saves_where_one_is_stale_fail_only_that_one(h: Harness) -> None:
    tokens: dict[str, int] = {}
    for identity in IDS:
        tokens[identity] = await h.token(identity)
        await h.store.upsert_continuity_record(record(identity, f"s-{identity}"), tokens[identity])
    stale = tokens[STALE]
    tokens[STALE] = await h.token(STALE, stale)  # a new owner fences the identity
    await h.store.upsert_continuity_record(record(STALE, f"s-{STALE}"), tokens[STALE])

    outcomes = await _saves_with_one_stale(h.store, tokens, stale)

    _check_outcomes(outcomes, tokens, stale)
    states = dict(await h.store.resolve_many(IDS))
    for identity in IDS:
        version = 0 if identity == STALE else 1
        assert states[identity] == Ready(record(identity, f"s-{identity}", version=version))
    assert await h.store.load_session_snapshot(f"s-{STALE}") is None
    if isinstance(h.store, GrpcContinuityStore):
        assert h.store.batch_calls_sent >= 1  # the saves shared a call


class _NoBatchServicer(ContinuityServicer):
    """A service from before SaveSessionSnapshots existed."""

    async def SaveSessionSnapshots(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")


async def test_a_service_without_the_batch_call_gets_each_save_alone() -> None:
    engine = MemoryContinuityStore()
    server = grpc.aio.server(interceptors=[ServiceCallInterceptor({SERVICE_NAME: ERRORS})])
    svc_grpc.add_ContinuityStoreServiceServicer_to_server(_NoBatchServicer(engine), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            store = GrpcContinuityStore(channel, timeout=20.0)
            tokens = dict.fromkeys(IDS, 1)
            for identity in IDS:
                await store.upsert_continuity_record(record(identity, f"s-{identity}"), 1)
            tokens[STALE] = 2
            await store.upsert_continuity_record(record(STALE, f"s-{STALE}"), 2)

            outcomes = await _saves_with_one_stale(store, tokens, 1)

            _check_outcomes(outcomes, tokens, 1)
            assert store.batch_calls_sent == 0
            assert not store._saves.batch_calls  # and it no longer tries
    finally:
        await server.stop(0)
