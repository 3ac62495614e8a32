"""The fast acquire request is byte-for-byte the reference one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mobkit.lease.etcd_requests import acquire_request, build_acquire_request

keys = st.lists(st.binary(min_size=1, max_size=300), max_size=70)
holders = st.binary(max_size=200)
lease_ids = st.integers(min_value=0, max_value=2**63 - 1)


@given(keys, holders, lease_ids)
def test_fast_request_equals_the_reference(ks: list[bytes], holder: bytes, lease: int) -> None:
    fast = acquire_request(ks, holder, lease)
    assert fast == build_acquire_request(ks, holder, lease)
    assert fast.SerializeToString() == build_acquire_request(ks, holder, lease).SerializeToString()


def test_varint_boundaries_of_key_lengths() -> None:
    for length in (1, 63, 64, 127, 128, 129, 16383, 16384):
        ks = [bytes([i % 251]) * length for i in range(3)]
        assert acquire_request(ks, b"orch@h:1", 7) == build_acquire_request(ks, b"orch@h:1", 7)


def test_the_nested_txn_is_create_if_absent_on_the_lease() -> None:
    [op] = acquire_request([b"/p/leases/a"], b"orch@h:1", 42).success
    sub = op.request_txn
    assert sub.compare[0].key == b"/p/leases/a"
    assert sub.compare[0].WhichOneof("target_union") == "create_revision"
    assert sub.compare[0].create_revision == 0
    put = sub.success[0].request_put
    assert (put.key, put.value, put.lease) == (b"/p/leases/a", b"orch@h:1", 42)
    assert sub.failure[0].request_range.key == b"/p/leases/a"
