"""The run store, the same checks in memory and on a real etcd: idempotent creation,
fenced saves (a stale owner's write is refused and changes nothing), the active set,
paging, cancel requests and retention."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest
import pytest_asyncio
from test_flow_document import AGENTS, ASK_TEAM

from mobkit.core.errors import SnapshotTooLarge, StaleFencingToken
from mobkit.core.keyspace import Keyspace, run_lease_identity
from mobkit.core.types import Acquired, LeaseGrant
from mobkit.etcd.client import EtcdClient
from mobkit.flows.etcd_store import EtcdRunStore
from mobkit.flows.memory_store import MemoryRunStore
from mobkit.flows.records import RunRecord, new_run_id
from mobkit.flows.run import Run, RunState, cancel
from mobkit.flows.store import RunStore
from mobkit.lease.domain import LeaseProvider
from mobkit.lease.etcd_backend import EtcdLeaseProvider
from mobkit.lease.memory import MemoryLeaseProvider
from mobkit.roster.document import parse_roster_toml
from mobkit.testing.suite import until

FLOW = parse_roster_toml(AGENTS + ASK_TEAM).flows[0]
HOLDER = "orch-a~1@127.0.0.1:7001"
OTHER = "orch-b~1@127.0.0.1:7002"
TTL = timedelta(seconds=2)


@dataclass
class Backend:
    store: RunStore
    leases: LeaseProvider
    kind: str
    client: EtcdClient | None = None
    keys: Keyspace | None = None

    async def grant(self, run_id: str, holder: str = HOLDER) -> LeaseGrant:
        (result,) = await self.leases.acquire_leases([run_lease_identity(run_id)], holder, TTL)
        assert isinstance(result, Acquired), result
        return result.grant


@pytest_asyncio.fixture(params=["memory", "etcd"])
async def backend(
    request: pytest.FixtureRequest, etcd_client: EtcdClient, etcd_prefix: str
) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield Backend(MemoryRunStore(retention_seconds=1.0), MemoryLeaseProvider(), "memory")
    else:
        store = EtcdRunStore(etcd_client, etcd_prefix, retention_seconds=1.0)
        yield Backend(
            store,
            EtcdLeaseProvider(etcd_client, etcd_prefix),
            "etcd",
            etcd_client,
            Keyspace(etcd_prefix),
        )


def record(request_id: str | None = "req-1", run_id: str | None = None) -> RunRecord:
    run = Run(run_id or new_run_id(), FLOW.flow_id, 1, {"question": "q"})
    return RunRecord(run, (FLOW,), 10, 10, request_id, {"team": "alpha"})


async def test_create_is_idempotent_by_request_id(backend: Backend) -> None:
    first, created = await backend.store.create(record("req-1"))
    assert created
    again, created = await backend.store.create(record("req-1"))
    assert not created and again == first
    other, created = await backend.store.create(record("req-2"))
    assert created and other.run_id != first.run_id
    assert await backend.store.get(first.run_id) == first
    assert await backend.store.get("no-such-run") is None


async def test_creating_a_nested_run_again_answers_the_one_there(backend: Backend) -> None:
    first, _ = await backend.store.create(record(None, run_id="p.step"))
    again, created = await backend.store.create(record(None, run_id="p.step"))
    assert not created and again == first


async def test_only_the_current_lease_holder_saves(backend: Backend) -> None:
    stored, _ = await backend.store.create(record())
    grant = await backend.grant(stored.run_id)
    moved = replace(stored, updated_ms=11)
    await backend.store.save(moved, grant.fencing_token)
    assert await backend.store.get(stored.run_id) == moved
    # The owner loses the lease; another replica takes the run over.
    await backend.leases.release_leases([grant], HOLDER)
    newer = await backend.grant(stored.run_id, OTHER)
    assert newer.fencing_token > grant.fencing_token
    await backend.store.save(replace(moved, updated_ms=12), newer.fencing_token)
    with pytest.raises(StaleFencingToken) as refused:
        await backend.store.save(replace(moved, updated_ms=99), grant.fencing_token)
    assert refused.value.identity == run_lease_identity(stored.run_id)
    stored_now = await backend.store.get(stored.run_id)
    assert stored_now is not None and stored_now.updated_ms == 12


async def test_a_finished_run_leaves_the_active_set_and_expires(backend: Backend) -> None:
    a, _ = await backend.store.create(record("a"))
    b, _ = await backend.store.create(record("b"))
    assert await backend.store.active() == sorted([a.run_id, b.run_id])
    grant = await backend.grant(a.run_id)
    await backend.store.request_cancel(a.run_id)
    assert await backend.store.cancel_requested(a.run_id)
    done = replace(a, run=cancel(a.run))
    assert done.run.state is RunState.CANCELED
    await backend.store.save(done, grant.fencing_token)
    assert await backend.store.active() == [b.run_id]
    assert not await backend.store.cancel_requested(a.run_id)
    await backend.store.request_cancel(a.run_id)  # finished: nothing to cancel
    assert not await backend.store.cancel_requested(a.run_id)

    # Past the retention (1 s here, plus one bucket) the run and its request id are gone.
    async def expired() -> bool:
        return await backend.store.get(a.run_id) is None

    await until(expired, "the finished run past its retention", 15)
    again, created = await backend.store.create(record("a"))
    assert created and again.run_id != a.run_id


async def test_runs_page_in_creation_order(backend: Backend) -> None:
    ids = [new_run_id(now_ms=1_000 + i) for i in range(5)]
    for run_id in reversed(ids):
        await backend.store.create(record(None, run_id=run_id))
    first = await backend.store.page("", 2)
    assert [r.run_id for r in first] == ids[:2]
    rest = await backend.store.page(first[-1].run_id, 10)
    assert [r.run_id for r in rest] == ids[2:]


async def test_a_record_over_the_limit_is_refused_and_nothing_changes(backend: Backend) -> None:
    stored, _ = await backend.store.create(record())
    grant = await backend.grant(stored.run_id)
    huge = replace(stored, run=replace(stored.run, input="x" * (1024 * 1024)))
    with pytest.raises(SnapshotTooLarge):
        await backend.store.save(huge, grant.fencing_token)
    assert await backend.store.get(stored.run_id) == stored
