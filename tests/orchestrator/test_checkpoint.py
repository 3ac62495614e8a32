"""The checkpoint envelope: runtime snapshot plus recent receipts, round-tripped."""

from __future__ import annotations

from collections import OrderedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobkit.core.errors import StoreCorruption
from mobkit.core.identity import AgentIdentity, SessionId
from mobkit.core.types import DispatchReceipt, SessionSnapshot
from mobkit.orchestrator import checkpoint

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
receipts = st.builds(
    DispatchReceipt,
    identity=st.just(AgentIdentity("agent-1")),
    session_id=st.just(SessionId("s-1")),
    fencing_token=st.integers(1, 2**62),
    checkpoint_version=st.integers(1, 2**40),
    output=st.text(max_size=20),
    structured_output=json_values,
    correlation_id=st.none() | st.text(max_size=8),
)


@given(data=st.binary(max_size=64), kept=st.lists(st.tuples(st.text(min_size=1), receipts)))
def test_encode_then_decode_gives_back_the_snapshot_and_the_last_receipts(
    data: bytes, kept: list[tuple[str, DispatchReceipt]]
) -> None:
    ordered: OrderedDict[str, DispatchReceipt] = OrderedDict()
    for key, receipt in kept:
        checkpoint.remember(ordered, key, receipt)
    runtime, back = checkpoint.decode("agent-1", checkpoint.encode(SessionSnapshot(data), ordered))
    assert runtime.data == data
    assert list(back.items()) == list(ordered.items())[-checkpoint.MAX_RECEIPTS :]


def test_an_undecodable_checkpoint_is_store_corruption() -> None:
    with pytest.raises(StoreCorruption):
        checkpoint.decode("agent-1", SessionSnapshot(b'{"format": 1, "runtime": "!!"}'))
