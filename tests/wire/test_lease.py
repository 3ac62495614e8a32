"""Round trips of lease domain values through ``mobkit.lease.v1`` protos (and bytes)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobkit.core.errors import InvalidArgument
from mobkit.core.identity import AgentIdentity
from mobkit.core.types import Acquired, AlreadyHeld, LeaseGrant, LeaseInfo, Lost, Renewed
from mobkit.gen.lease.v1 import lease_pb2
from mobkit.gen.lease.v1 import lease_service_pb2 as pb
from mobkit.lease.domain import Lease
from mobkit.wire import lease as wire

text = st.text(st.characters(codec="utf-8"), max_size=16)
identities = st.builds(AgentIdentity, text)
tokens = st.integers(min_value=0, max_value=2**64 - 1)
durations = st.timedeltas(min_value=timedelta(days=-3650), max_value=timedelta(days=3650))
grants = st.builds(LeaseGrant, identities, tokens, durations)
acquire_results = st.builds(Acquired, grants) | st.builds(AlreadyHeld, identities, text)
renew_results = st.builds(Renewed, grants) | st.builds(Lost, identities)
leases = st.builds(Lease, identities, text, tokens, durations)
lease_infos = st.builds(LeaseInfo, tokens, durations, st.booleans())


def through_bytes(msg: Any) -> Any:
    return type(msg).FromString(msg.SerializeToString())


CASES: list[tuple[Any, Callable[[Any], Any], Callable[[Any], Any]]] = [
    (grants, wire.grant_to_proto, wire.grant_from_proto),
    (acquire_results, wire.acquire_result_to_proto, wire.acquire_result_from_proto),
    (renew_results, wire.renew_result_to_proto, wire.renew_result_from_proto),
    (leases, wire.lease_to_proto, wire.lease_from_proto),
    (lease_infos, wire.lease_info_to_proto, wire.lease_info_from_proto),
]


@pytest.mark.parametrize(
    ("values", "to_proto", "from_proto"),
    CASES,
    ids=["grant", "acquire_result", "renew_result", "lease", "lease_info"],
)
def test_round_trip(values: Any, to_proto: Any, from_proto: Any) -> None:
    @given(values)
    def check(value: Any) -> None:
        assert from_proto(through_bytes(to_proto(value))) == value

    check()


@given(st.lists(acquire_results, max_size=20), st.lists(renew_results, max_size=20))
def test_batches_round_trip_like_single_messages(acquires: list, renews: list) -> None:
    acquire_reply = pb.AcquireLeasesResponse()
    wire.add_acquire_results(acquire_reply.results, acquires)
    assert list(acquire_reply.results) == [wire.acquire_result_to_proto(r) for r in acquires]
    assert wire.acquire_results_from_proto(through_bytes(acquire_reply).results) == acquires

    renew_reply = pb.RenewLeasesResponse()
    wire.add_renew_results(renew_reply.results, renews)
    assert list(renew_reply.results) == [wire.renew_result_to_proto(r) for r in renews]
    assert wire.renew_results_from_proto(through_bytes(renew_reply).results) == renews

    request = pb.RenewLeasesRequest()
    grants_in = [r.grant for r in renews if isinstance(r, Renewed)]
    wire.add_grants(request.grants, grants_in)
    assert wire.grants_from_proto(through_bytes(request).grants) == grants_in


def test_oneof_cases_map_to_the_seed_variants() -> None:
    grant = LeaseGrant(AgentIdentity("a"), 42, timedelta(seconds=10))
    acquired = wire.acquire_result_to_proto(Acquired(grant))
    assert acquired.WhichOneof("result") == "acquired"
    assert acquired.acquired.fencing_token == 42
    assert acquired.acquired.ttl.seconds == 10
    held = wire.acquire_result_to_proto(AlreadyHeld(AgentIdentity("a"), "orch-1@h:1"))
    assert (held.WhichOneof("result"), held.already_held.holder) == ("already_held", "orch-1@h:1")
    assert wire.renew_result_to_proto(Lost(AgentIdentity("a"))).WhichOneof("result") == "lost"
    assert wire.renew_result_to_proto(Renewed(grant)).WhichOneof("result") == "renewed"


def test_results_without_a_case_are_refused() -> None:
    with pytest.raises(InvalidArgument):
        wire.acquire_result_from_proto(lease_pb2.LeaseAcquireResult())
    with pytest.raises(InvalidArgument):
        wire.renew_result_from_proto(lease_pb2.LeaseRenewResult())
