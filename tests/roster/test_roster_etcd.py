"""The etcd source: one key holds the roster; writes observed through the watch."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest

from mobkit.core.errors import RosterInvalid, RosterUnavailable
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.process import EtcdProcess
from mobkit.roster.domain import RosterSnapshot, RosterUnreadable
from mobkit.roster.etcd_source import EtcdRoster, put_roster_document, roster_key

WAIT = 10.0
HEAD = '[profiles]\nworker = "notebook"\n'


def team(*names: str) -> str:
    return HEAD + "".join(f'[[agents]]\nidentity = "{n}"\nprofile = "worker"\n' for n in names)


async def next_matching(
    stream: AsyncIterator[RosterSnapshot], check: Callable[[RosterSnapshot], bool]
) -> RosterSnapshot:
    async def scan() -> RosterSnapshot:
        async for snap in stream:
            if check(snap):
                return snap
        raise AssertionError("stream ended")

    return await asyncio.wait_for(scan(), WAIT)


def test_key_layout() -> None:
    assert roster_key("/mobkit") == "/mobkit/roster/document"
    assert roster_key("/t/x/") == "/t/x/roster/document"


async def test_writes_are_observed_with_the_key_revision(
    etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    key = roster_key(etcd_prefix)
    rev = await put_roster_document(etcd_client, key, team("a"))
    roster = await EtcdRoster(etcd_client, key).start()
    try:
        stream = roster.watch_roster()
        first = await asyncio.wait_for(anext(stream), WAIT)
        assert first.identities == ["a"] and first.revision == rev
        rev2 = await put_roster_document(etcd_client, key, team("a", "b"))
        second = await next_matching(stream, lambda s: s.identities == ["a", "b"])
        assert second.revision == rev2 > rev
        # JSON works as well as TOML.
        doc = {"profiles": {"worker": "echo"}, "agents": [{"identity": "j", "profile": "worker"}]}
        rev3 = await put_roster_document(etcd_client, key, json.dumps(doc))
        third = await next_matching(stream, lambda s: s.identities == ["j"])
        assert third.revision == rev3 and third.profiles == {"worker": "echo"}
        await stream.aclose()
    finally:
        await roster.close()


async def test_bad_write_and_delete_keep_the_last_valid_roster(
    etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    key = roster_key(etcd_prefix)
    await put_roster_document(etcd_client, key, team("a"))
    roster = await EtcdRoster(etcd_client, key).start()
    try:
        stream = roster.watch_roster()
        good = await asyncio.wait_for(anext(stream), WAIT)
        await put_roster_document(etcd_client, key, team("a").replace('"worker"\n', '"ghost"\n'))
        bad = await next_matching(stream, lambda s: s.problem is not None)
        assert bad.problem is not None and bad.problem.field == "profile"
        assert (bad.specs, bad.revision) == (good.specs, good.revision)
        await etcd_client.delete(key)
        gone = await next_matching(stream, lambda s: s.problem is not None and s.problem.unreadable)
        assert gone.specs == good.specs
        await put_roster_document(etcd_client, key, team("z"))
        fixed = await next_matching(stream, lambda s: s.problem is None)
        assert fixed.identities == ["z"] and fixed.revision > good.revision
        await stream.aclose()
    finally:
        await roster.close()


async def test_get_roster_reads_its_own_writes(etcd_client: EtcdClient, etcd_prefix: str) -> None:
    key = roster_key(etcd_prefix)
    roster = await EtcdRoster(etcd_client, key).start()
    try:
        with pytest.raises(RosterUnreadable):  # nothing stored yet
            await roster.get_roster()
        rev = await put_roster_document(etcd_client, key, team("a", "b"))
        snap = await roster.get_roster()  # no waiting for the watch
        assert snap.identities == ["a", "b"] and snap.revision == rev
    finally:
        await roster.close()


async def test_compare_and_swap_write(etcd_client: EtcdClient, etcd_prefix: str) -> None:
    key = roster_key(etcd_prefix)
    assert await put_roster_document(etcd_client, key, team("a"), expected_revision=1) is None
    rev = await put_roster_document(etcd_client, key, team("a"), expected_revision=0)
    assert rev is not None
    assert await put_roster_document(etcd_client, key, team("b"), expected_revision=0) is None
    assert await put_roster_document(etcd_client, key, team("b"), expected_revision=rev)


async def test_etcd_down_is_backend_unavailable(etcd: EtcdProcess) -> None:
    client = await EtcdClient.connect([etcd.endpoint], timeout=1.0)
    try:
        key = roster_key("/down")
        await put_roster_document(client, key, team("a"))
        roster = await EtcdRoster(client, key).start()
        try:
            etcd.kill()
            with pytest.raises(RosterUnavailable) as info:
                await roster.get_roster()
            assert info.value.reason == "BACKEND_UNAVAILABLE"
            assert not isinstance(info.value, RosterInvalid)
        finally:
            await roster.close()
    finally:
        await client.close()
