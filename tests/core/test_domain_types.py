"""Invariants of the core domain types (mirroring the seeds)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobkit.core import errors as e
from mobkit.core.identity import parse_display_name, parse_identities, parse_identity
from mobkit.core.types import ManagedPeerEdge, SessionSnapshot
from mobkit.testing.strategies import identities

valid_ids = identities(max_size=30)


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("", "must not be empty"),
        ("a b", "must not contain whitespace"),
        ("tab\there", "must not contain whitespace"),
        ("a/b", "must not contain slashes"),
        ("x" * 257, "must be at most 256 UTF-8 bytes (got 257)"),
        ("é" * 129, "must be at most 256 UTF-8 bytes (got 258)"),
        ("a\x00b", "must not contain control or format characters (U+0000 at index 1)"),
        ("esc\x1b", "must not contain control or format characters (U+001B at index 3)"),
        ("del\x7f", "must not contain control or format characters (U+007F at index 3)"),
        ("zw\u200bsp", "must not contain control or format characters (U+200B at index 2)"),
        ("\ufeffbom", "must not contain control or format characters (U+FEFF at index 0)"),
        ("\x1c", "must not contain whitespace"),  # str.isspace, as Meerkat's validator
    ],
)
def test_invalid_identities_carry_the_seed_reason(value: str, detail: str) -> None:
    with pytest.raises(e.InvalidIdentity) as info:
        parse_identity(value)
    assert info.value.reason == "INVALID_IDENTITY"
    assert info.value.metadata == {"identity": value, "detail": detail}


@given(valid_ids)
def test_valid_identities_parse_to_themselves(value: str) -> None:
    assert parse_identity(value) == value


def test_duplicates_in_a_batch_are_invalid_argument() -> None:
    with pytest.raises(e.InvalidArgument) as info:
        parse_identities(["a", "b", "a"])
    assert info.value.reason == "INVALID_ARGUMENT" and info.value.metadata["field"] == "identities"


def test_display_name_must_not_be_empty() -> None:
    assert parse_display_name("Planner") == "Planner"
    with pytest.raises(e.InvalidIdentity):
        parse_display_name("")


@given(valid_ids, valid_ids)
def test_edges_are_canonical_and_order_independent(x: str, y: str) -> None:
    if x == y:
        with pytest.raises(e.SelfEdge):
            ManagedPeerEdge.new(x, y)
        return
    edge = ManagedPeerEdge.new(x, y)
    assert edge == ManagedPeerEdge.new(y, x)
    assert edge.a < edge.b and {edge.a, edge.b} == {x, y}
    assert edge.other(x) == y and edge.other(y) == x


def test_non_canonical_or_self_edges_cannot_be_built_directly() -> None:
    with pytest.raises(e.InvalidArgument):
        ManagedPeerEdge("b", "a")  # type: ignore[arg-type]
    with pytest.raises(e.SelfEdge):
        ManagedPeerEdge("a", "a")  # type: ignore[arg-type]


@given(st.binary(max_size=256))
def test_snapshot_json_wire_form_is_base64(data: bytes) -> None:
    wire = SessionSnapshot(data).to_json()
    assert wire == {"data": base64.b64encode(data).decode()}
    assert SessionSnapshot.from_json(json.loads(json.dumps(wire))) == SessionSnapshot(data)


@pytest.mark.parametrize("bad", [{"data": "not base64!"}, {"data": 5}, {}, "x", None])
def test_snapshot_json_rejects_malformed_input(bad: object) -> None:
    with pytest.raises(e.InvalidArgument):
        SessionSnapshot.from_json(bad)


def test_error_metadata_holds_every_dynamic_value_as_strings() -> None:
    err = e.StaleFencingToken("planner", 5, 9)
    assert err.reason == "STALE_FENCING_TOKEN" and err.domain == "mobkit.dev"
    assert err.metadata == {"identity": "planner", "presented": "5", "current": "9"}


def test_the_identity_bound_counts_utf8_bytes_inclusively() -> None:
    assert parse_identity("x" * 256) == "x" * 256
    assert parse_identity("é" * 128) == "é" * 128  # 256 bytes
    assert parse_identity("\U0001f600" * 64) == "\U0001f600" * 64  # 4-byte characters
    assert parse_identity("\ue000private") == "\ue000private"  # private use is allowed
