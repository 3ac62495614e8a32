"""The one page-token codec: what it issues it decodes; anything else is refused as
INVALID_ARGUMENT ``page_token`` with the listing's own detail."""

from __future__ import annotations

import pytest

from mobkit.core import page_token
from mobkit.core.errors import InvalidArgument


@pytest.mark.parametrize("payload", ["after:planner", "ü-ö", "x" * 300, '{"v":1}'])
@pytest.mark.parametrize("padded", [True, False])
def test_a_token_decodes_to_its_payload(payload: str, padded: bool) -> None:
    token = page_token.encode(payload, padded=padded)
    assert "=" not in token or padded
    assert page_token.decode(token, "not ours", padded=padded) == payload


@pytest.mark.parametrize("token", ["abc", "é", "YWZ0ZXI6eA==é", "/w=="])
def test_anything_else_is_refused_with_the_listings_detail(token: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        page_token.decode(token, "not a token returned by ListLeases")
    assert info.value.metadata == {
        "field": "page_token",
        "detail": "not a token returned by ListLeases",
    }


def test_a_padded_token_must_keep_its_padding() -> None:
    token = page_token.encode("after:x")
    assert token.endswith("=")
    with pytest.raises(InvalidArgument):
        page_token.decode(token.rstrip("="), "not ours")
    assert page_token.decode(token.rstrip("="), "not ours", padded=False) == "after:x"
