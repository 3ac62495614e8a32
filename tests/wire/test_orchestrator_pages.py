"""Page tokens of the OrchestratorService listings, all through ``core.page_token``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobkit.core.errors import InvalidArgument
from mobkit.wire.orchestrator import (
    position_page_after,
    position_page_token,
    status_page_after,
    status_page_token,
)


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_a_position_token_names_its_position(position: int) -> None:
    assert position_page_after(position_page_token(position)) == position


def test_position_tokens_read_as_before() -> None:
    # base64 of "10": tokens issued by earlier servers still continue their listing.
    assert position_page_token(10) == "MTA="
    assert position_page_after("MTA=") == 10
    assert position_page_after("") == 0


@pytest.mark.parametrize(
    "token", ["garbage!", position_page_token(3)[:-2] + "$$", status_page_token("a"), "LTE="]
)
def test_a_token_no_server_issued_is_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        position_page_after(token)
    assert info.value.field == "page_token"


def test_a_status_token_is_not_a_position_token_and_back() -> None:
    with pytest.raises(InvalidArgument):
        status_page_after(position_page_token(3))
    assert status_page_after(status_page_token("planner")) == "planner"
