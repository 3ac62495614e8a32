"""Every typed error the client raises, for its reason, from a real suite; both flavours."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from client_support import TEAM

from mobkit.client import (
    AsyncMobKit,
    IdentityNotFound,
    InvalidIdentity,
    InvalidTransition,
    MobKit,
    MobKitError,
    NotAddressable,
    StaleEventCursor,
    StaleFencingToken,
)
from mobkit.core.types import ContinuityRecord, Ready
from mobkit.testing.processes import ServeProcess

FAR = 10**15  # beyond any cursor the suite has


@dataclass(frozen=True)
class Case:
    name: str
    call: Callable[[Any], Any]  # client -> result, or awaitable of it
    error: type[MobKitError]
    reason: str
    metadata: dict[str, str]
    attrs: dict[str, Any]


def first_event(mk: Any) -> Any:
    stream = mk.events(after_seq=FAR)
    if isinstance(mk, AsyncMobKit):
        return stream.__anext__()
    return next(stream)


CASES = [
    Case(
        "status of an unknown identity",
        lambda mk: mk.status("zed"),
        IdentityNotFound,
        "IDENTITY_NOT_FOUND",
        {"identity": "zed"},
        {"identity": "zed"},
    ),
    Case(
        "send to an unknown identity",
        lambda mk: mk.send("zed", "hi"),
        IdentityNotFound,
        "IDENTITY_NOT_FOUND",
        {"identity": "zed"},
        {"identity": "zed"},
    ),
    Case(
        "send to an internal-only identity",
        lambda mk: mk.send("erin", "hi"),
        NotAddressable,
        "NOT_ADDRESSABLE",
        {"identity": "erin"},
        {"identity": "erin"},
    ),
    Case(
        "send to a malformed identity",
        lambda mk: mk.send("not valid", "hi"),
        InvalidIdentity,
        "INVALID_IDENTITY",
        {"identity": "not valid", "detail": "must not contain whitespace"},
        {"identity": "not valid"},
    ),
    Case(
        "resume an active identity",
        lambda mk: mk.resume("bob"),
        InvalidTransition,
        "INVALID_TRANSITION",
        {"identity": "bob", "from": "active", "to": "active"},
        {"identity": "bob", "from_state": "active", "to_state": "active"},
    ),
    Case(
        "list events after a cursor beyond the latest",
        lambda mk: mk.list_events_page(after_seq=FAR),
        StaleEventCursor,
        "STALE_EVENT_CURSOR",
        {"after_seq": str(FAR)},
        {"after_seq": FAR},
    ),
    Case(
        "follow events after a cursor beyond the latest",
        first_event,
        StaleEventCursor,
        "STALE_EVENT_CURSOR",
        {"after_seq": str(FAR)},
        {"after_seq": FAR},
    ),
]


def check(exc: MobKitError, case: Case) -> None:
    assert type(exc) is case.error
    assert exc.reason == case.reason
    assert exc.domain == "mobkit.dev"
    for key, value in case.metadata.items():
        assert exc.metadata[key] == value, key
    for name, value in case.attrs.items():
        assert getattr(exc, name) == value, name


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_async_client_raises_typed_errors(suite: ServeProcess, case: Case) -> None:
    async with AsyncMobKit(suite.address) as mk:
        before = await mk.status("alice")
        with pytest.raises(MobKitError) as info:
            result = case.call(mk)
            if inspect.isawaitable(result):
                await result
        check(info.value, case)
        after = await mk.status("alice")
    assert after.checkpoint_version == before.checkpoint_version
    assert after.state == before.state


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_sync_client_raises_typed_errors(suite: ServeProcess, case: Case) -> None:
    with MobKit(suite.address) as mk, pytest.raises(MobKitError) as info:
        case.call(mk)
    check(info.value, case)


async def test_stale_event_cursor_says_how_far_the_log_goes(suite: ServeProcess) -> None:
    async with AsyncMobKit(suite.address) as mk:
        latest = (await mk.list_events_page(after_seq=0, page_size=1)).latest_cursor
        with pytest.raises(StaleEventCursor) as info:
            await mk.list_events_page(after_seq=latest + 1)
    assert info.value.latest >= latest > 0
    assert isinstance(info.value.latest, int)


async def test_stale_fencing_token_carries_presented_and_current(suite: ServeProcess) -> None:
    async with AsyncMobKit(suite.address) as mk:
        continuity = mk.providers.continuity
        [(_, state)] = await continuity.resolve_many(["alice"])
        assert isinstance(state, Ready)
        owner_token = (await mk.status("alice")).lease
        assert owner_token is not None and owner_token.fencing_token > 1
        stale = ContinuityRecord(
            identity=state.record.identity,
            agent_runtime_id=state.record.agent_runtime_id,
            session_id=state.record.session_id,
            generation=state.record.generation,
            checkpoint_version=state.record.checkpoint_version + 1,
        )
        with pytest.raises(StaleFencingToken) as info:
            await continuity.upsert_continuity_record(stale, fencing_token=1)
        [(_, after)] = await continuity.resolve_many(["alice"])
    exc = info.value
    assert (exc.reason, exc.domain) == ("STALE_FENCING_TOKEN", "mobkit.dev")
    assert exc.identity == "alice"
    assert exc.presented == 1
    assert isinstance(exc.current, int) and exc.current >= owner_token.fencing_token
    assert exc.metadata["presented"] == "1"
    assert after == state  # refused writes change nothing


def test_every_team_member_is_reachable(suite: ServeProcess) -> None:
    # Guards the cases above: they fail for the reason named, not because the suite is empty.
    with MobKit(suite.address) as mk:
        assert [s.identity for s in mk.list_statuses()] == sorted(TEAM)
