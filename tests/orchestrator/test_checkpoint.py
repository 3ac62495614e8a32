"""The checkpoint format and the stored receipt encoding, round-tripped."""

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


@given(data=st.binary(max_size=64))
def test_encode_then_decode_gives_back_the_runtime_snapshot_byte_for_byte(data: bytes) -> None:
    runtime, legacy = checkpoint.decode("agent-1", checkpoint.encode(SessionSnapshot(data)))
    assert runtime.data == data
    assert not legacy  # receipts live beside the checkpoint now, not inside it


@given(receipt=receipts, limit=st.integers(1, 64))
def test_a_stored_receipt_round_trips_and_is_cut_to_its_output_limit(
    receipt: DispatchReceipt, limit: int
) -> None:
    back = checkpoint.decode_receipt("agent-1", checkpoint.encode_receipt(receipt, limit))
    raw = receipt.output.encode()
    if len(raw) <= limit:
        assert back.output == receipt.output
    else:
        assert back.output_truncated
        assert raw.startswith(back.output.encode()) and len(back.output.encode()) <= limit
    if back.structured_output is None and receipt.structured_output is not None:
        assert back.output_truncated
    elif not back.output_truncated:
        assert back == receipt
    assert (back.identity, back.checkpoint_version) == (
        receipt.identity,
        receipt.checkpoint_version,
    )


def test_a_format_1_checkpoint_still_reads_with_its_receipts() -> None:
    import base64
    import json

    legacy = {
        "format": 1,
        "runtime": base64.b64encode(b"state").decode(),
        "receipts": [
            [
                "k1",
                {
                    "identity": "agent-1",
                    "session_id": "s-1",
                    "fencing_token": 7,
                    "checkpoint_version": 3,
                    "output": "ok",
                },
            ]
        ],
    }
    runtime, receipts_back = checkpoint.decode(
        "agent-1", SessionSnapshot(json.dumps(legacy).encode())
    )
    assert runtime.data == b"state"
    assert receipts_back["k1"].checkpoint_version == 3


def test_legacy_receipts_kept_in_memory_are_bounded() -> None:
    cache: OrderedDict[str, DispatchReceipt] = OrderedDict()
    receipt = DispatchReceipt(AgentIdentity("a"), SessionId("s"), 1, 1, "x")
    for i in range(checkpoint.LEGACY_RECEIPTS + 50):
        checkpoint.remember(cache, f"k{i}", receipt)
    assert len(cache) == checkpoint.LEGACY_RECEIPTS
    assert "k49" not in cache and f"k{checkpoint.LEGACY_RECEIPTS + 49}" in cache


def test_an_undecodable_checkpoint_is_store_corruption() -> None:
    with pytest.raises(StoreCorruption):
        checkpoint.decode("agent-1", SessionSnapshot(b'{"format": 1, "runtime": "!!"}'))
