"""Retries: UNAVAILABLE only, idempotent calls only, within the call's deadline."""

from __future__ import annotations

import asyncio

import pytest

from mobkit.client import AsyncMobKit, BackendUnavailable, IdentityNotFound, MobKit, RetryPolicy
from mobkit.client.retry import is_idempotent
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.gen.roster.v1 import roster_pb2
from mobkit.testing.processes import ServeProcess
from mobkit.testing.suite import dispatch_request, eventually, send_request

ORCH = "/mobkit.orchestrator.v1.OrchestratorService/"
PATIENT = RetryPolicy(max_attempts=1000, initial_backoff=0.05, max_backoff=0.5)


def test_only_calls_safe_to_repeat_are_idempotent() -> None:
    assert is_idempotent(ORCH + "GetIdentityStatus", svc.GetIdentityStatusRequest())
    assert is_idempotent(ORCH + "ListEvents", svc.ListEventsRequest())
    assert is_idempotent(ORCH + "Reconcile", svc.ReconcileRequest())
    assert is_idempotent(b"/mobkit.lease.v1.LeaseService/ListLeases", object())
    assert is_idempotent(ORCH + "Send", send_request("a", "x", key="k"))
    assert is_idempotent(ORCH + "Dispatch", dispatch_request("a", "x", key="k"))
    assert is_idempotent(ORCH + "ResetIdentity", svc.ResetIdentityRequest(request_id="r"))

    assert not is_idempotent(ORCH + "Send", send_request("a", "x"))
    assert not is_idempotent(ORCH + "Dispatch", dispatch_request("a", "x"))
    assert not is_idempotent(ORCH + "Send", svc.SendRequest(identity="a"))  # no input at all
    empty_content = svc.SendRequest(identity="a")
    empty_content.input.content.CopyFrom(roster_pb2.ContentInput(text="x"))
    assert not is_idempotent(ORCH + "Send", empty_content)
    assert not is_idempotent(ORCH + "ResetIdentity", svc.ResetIdentityRequest())
    assert not is_idempotent(
        "/mobkit.continuity.v1.ContinuityStoreService/DeleteContinuityRecord", object()
    )
    assert not is_idempotent("/mobkit.runtime.v1.AgentRuntimeService/RunTurn", object())


async def test_a_read_waits_out_a_restart_of_the_suite(own_suite: ServeProcess) -> None:
    async with AsyncMobKit(own_suite.address, retry=PATIENT, timeout=60) as mk:
        before = await mk.list_events_page(0, page_size=1)
        own_suite.kill()
        read = asyncio.create_task(mk.list_events_page(0, page_size=1))
        await eventually(lambda: mk.retries > 0, "a retry", 30.0)  # in its retry loop now
        assert not read.done()
        await asyncio.to_thread(own_suite.start)  # same address
        after = await read
    assert after.events[0] == before.events[0]  # the log survived; the read got through
    assert mk.retries >= 1


async def test_send_without_key_is_not_retried_but_with_key_is(own_suite: ServeProcess) -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.01)
    async with AsyncMobKit(own_suite.address, retry=policy, timeout=30) as mk:
        await mk.status("alice")  # connected once
        own_suite.kill()

        with pytest.raises(BackendUnavailable):
            await mk.send("alice", "hello")
        assert mk.retries == 0  # it may have run: the caller decides

        with pytest.raises(BackendUnavailable):
            await mk.send("alice", "hello", idempotency_key="k-1")
        assert mk.retries == policy.max_attempts - 1

        with pytest.raises(BackendUnavailable):
            await mk.reset("alice")  # a request id is generated, so it is retried
        assert mk.retries == 2 * (policy.max_attempts - 1)


async def test_other_codes_are_not_retried(own_suite: ServeProcess) -> None:
    async with AsyncMobKit(own_suite.address, retry=PATIENT) as mk:
        with pytest.raises(IdentityNotFound):
            await mk.status("zed")
    assert mk.retries == 0


def test_retries_stop_at_the_deadline(own_suite: ServeProcess) -> None:
    own_suite.kill()
    with MobKit(own_suite.address, retry=PATIENT, timeout=1.0) as mk:
        with pytest.raises(BackendUnavailable) as info:
            mk.status("alice")
        assert 0 < mk.retries < PATIENT.max_attempts - 1
    assert info.value.reason == "BACKEND_UNAVAILABLE"
