"""``wire.calls.Calls``, the call path of every internal gRPC client, against a real
gRPC server on port 0 that answers UNAVAILABLE as often as told."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from wire_support import serving_lease

from mobkit.core import errors as e
from mobkit.gen.lease.v1 import lease_service_pb2 as pb
from mobkit.gen.lease.v1 import lease_service_pb2_grpc as pb_grpc
from mobkit.server.errors import common_errors
from mobkit.wire.calls import Calls, decoder


class Flaky(pb_grpc.LeaseServiceServicer):
    """Answers UNAVAILABLE (no ErrorInfo, as a proxy or a dying server does) to the
    first ``failures`` calls, then ``refusal`` if set, else an empty page; remembers
    each call's metadata."""

    def __init__(self) -> None:
        self.failures = 0
        self.refusal: e.MobKitError | None = None
        self.calls = 0
        self.metadata: list[dict[str, str]] = []

    async def ListLeases(self, request: Any, context: Any) -> Any:
        self.calls += 1
        self.metadata.append({k: v for k, v in context.invocation_metadata() or ()})
        if self.calls <= self.failures:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "going away")
        if self.refusal is not None:
            raise self.refusal
        return pb.ListLeasesResponse()

    async def ReleaseLeases(self, request: Any, context: Any) -> Any:
        self.calls += 1
        await context.abort(grpc.StatusCode.UNAVAILABLE, "going away")


@pytest_asyncio.fixture
async def flaky() -> AsyncIterator[tuple[Flaky, pb_grpc.LeaseServiceStub]]:
    servicer = Flaky()
    async with serving_lease(servicer, common_errors()) as stub:
        yield servicer, stub


def calls(retries: int, slept: list[float]) -> Calls:
    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    return Calls(
        decoder(e.LeaseProviderUnavailable), timeout=5, retries=retries, backoff=0.1, sleep=sleep
    )


async def test_an_idempotent_call_is_retried_on_unavailable_with_backoff(
    flaky: tuple[Flaky, pb_grpc.LeaseServiceStub],
) -> None:
    servicer, stub = flaky
    servicer.failures = 2
    slept: list[float] = []
    await calls(2, slept)(stub.ListLeases, pb.ListLeasesRequest(), idempotent=True)
    assert servicer.calls == 3
    assert slept == [0.1, 0.2]


async def test_past_its_retries_a_call_fails_with_the_clients_unavailable_error(
    flaky: tuple[Flaky, pb_grpc.LeaseServiceStub],
) -> None:
    servicer, stub = flaky
    servicer.failures = 5
    with pytest.raises(e.LeaseProviderUnavailable):
        await calls(2, [])(stub.ListLeases, pb.ListLeasesRequest(), idempotent=True)
    assert servicer.calls == 3


async def test_a_call_not_marked_idempotent_is_tried_once(
    flaky: tuple[Flaky, pb_grpc.LeaseServiceStub],
) -> None:
    servicer, stub = flaky
    slept: list[float] = []
    with pytest.raises(e.LeaseProviderUnavailable):
        await calls(2, slept)(stub.ReleaseLeases, pb.ReleaseLeasesRequest())
    assert servicer.calls == 1 and slept == []


async def test_domain_errors_are_decoded_and_not_retried(
    flaky: tuple[Flaky, pb_grpc.LeaseServiceStub],
) -> None:
    servicer, stub = flaky
    servicer.refusal = e.InvalidArgument("page_size", "must not be negative")
    with pytest.raises(e.InvalidArgument) as info:
        await calls(2, [])(stub.ListLeases, pb.ListLeasesRequest(), idempotent=True)
    assert info.value.field == "page_size"
    assert servicer.calls == 1


async def test_metadata_and_a_per_call_deadline_go_with_the_call(
    flaky: tuple[Flaky, pb_grpc.LeaseServiceStub],
) -> None:
    servicer, stub = flaky
    await calls(0, [])(
        stub.ListLeases, pb.ListLeasesRequest(), timeout=None, metadata=(("x-probe", "1"),)
    )
    assert servicer.metadata[-1]["x-probe"] == "1"


def test_negative_retries_are_refused() -> None:
    with pytest.raises(ValueError):
        Calls(decoder(), retries=-1)
