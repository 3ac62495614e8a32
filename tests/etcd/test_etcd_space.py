"""Bounded etcd: the quota and compaction flags MobKit starts etcd with, NOSPACE as
``EtcdNoSpace``, the maintenance calls that recover from it (compact, defragment,
disarm), the alarm watch, and the coordinated compactor (two replicas, one etcd)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from mobkit.core.errors import BackendFull, BackendUnavailable
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.compactor import Compactor, compaction_key
from mobkit.etcd.errors import EtcdCompacted, EtcdNoSpace, EtcdUnavailable, backend_error
from mobkit.etcd.process import DEFAULT_QUOTA_BYTES, EtcdProcess
from mobkit.etcd.status_watch import EtcdStatusWatch
from mobkit.testing.suite import eventually

QUOTA = 16 * 1024**2
VALUE = b"x" * 1_000_000


@pytest_asyncio.fixture
async def small(tmp_path: Path) -> AsyncIterator[tuple[EtcdProcess, EtcdClient]]:
    proc = EtcdProcess(tmp_path / "etcd", unsafe_no_fsync=True, quota_backend_bytes=QUOTA)
    await proc.start_async()
    client = await EtcdClient.connect([proc.endpoint], timeout=10)
    try:
        yield proc, client
    finally:
        await client.close()
        proc.kill()


async def fill(client: EtcdClient, prefix: str = "/fill/") -> EtcdNoSpace:
    """Overwrite a few large keys until etcd refuses (history keeps every version)."""
    for n in range(10 * QUOTA // len(VALUE)):
        try:
            await client.put(f"{prefix}{n % 4}", VALUE)
        except EtcdNoSpace as exc:
            return exc
    raise AssertionError("etcd never ran out of space")


def test_every_etcd_mobkit_starts_has_a_quota_and_compacts(tmp_path: Path) -> None:
    command = EtcdProcess(tmp_path, binary="etcd", client_port=1, peer_port=2)._command()
    assert f"--quota-backend-bytes={DEFAULT_QUOTA_BYTES}" in command
    assert "--auto-compaction-mode=periodic" in command
    assert "--auto-compaction-retention=1h" in command
    small = EtcdProcess(
        tmp_path, binary="etcd", client_port=1, peer_port=2, quota_backend_bytes=QUOTA
    )._command()
    assert f"--quota-backend-bytes={QUOTA}" in small


async def test_nospace_is_its_own_error_and_compact_defrag_disarm_recover(
    small: tuple[EtcdProcess, EtcdClient],
) -> None:
    _, client = small
    exc = await fill(client)
    assert exc.code == "RESOURCE_EXHAUSTED" and "database space exceeded" in str(exc)
    assert not isinstance(exc, EtcdUnavailable)
    domain = backend_error(exc)
    assert isinstance(domain, BackendFull) and domain.backend == "etcd"
    assert isinstance(backend_error(EtcdUnavailable("down")), BackendUnavailable)
    # The alarm is raised cluster-wide: every write fails, reads and deletes do not.
    (alarm,) = await client.alarms()
    status = await client.status()
    assert alarm.memberID == status.header.member_id
    assert any("NOSPACE" in e for e in status.errors)
    with pytest.raises(EtcdNoSpace):
        await client.put("/small", b"1")
    with pytest.raises(EtcdNoSpace):
        await client.grant_lease(5)
    assert (await client.get("/fill/0")) is not None
    # Disarming alone does not help: the database is still over its quota.
    revision = (await client.range("/fill/0")).header.revision
    await client.compact(revision, physical=True)
    full_size = (await client.status()).dbSize
    await client.defragment()
    after = await client.status()
    assert after.dbSize < full_size / 2
    disarmed = await client.disarm()
    assert [a.memberID for a in disarmed] == [alarm.memberID]
    assert await client.alarms() == []
    await client.put("/small", b"1")
    with pytest.raises(EtcdCompacted):
        await client.range("/fill/0", revision=revision - 1)


async def test_the_watch_reports_the_alarm_and_its_end(
    small: tuple[EtcdProcess, EtcdClient],
) -> None:
    _, client = small
    seen: list[str] = []
    watch = EtcdStatusWatch(
        client,
        60.0,  # only kicks make it look again within this test
        on_full=lambda detail: seen.append(f"full: {detail}"),
        on_recovered=lambda: seen.append("recovered"),
    )
    watch.start()
    try:
        await eventually(lambda: watch._task is not None, what="watch started")
        await fill(client)
        watch.kick()
        await eventually(lambda: len(seen) == 1, what="NOSPACE noticed")
        assert seen[0].startswith("full: etcd NOSPACE alarm raised") and watch.full
        revision = (await client.range("/fill/0")).header.revision
        await client.compact(revision, physical=True)
        await client.defragment()
        await client.disarm()
        watch.kick()
        await eventually(lambda: len(seen) == 2, what="recovery noticed")
        assert seen[1] == "recovered" and not watch.full
    finally:
        await watch.stop()


@pytest_asyncio.fixture
async def fresh(etcd: EtcdProcess) -> AsyncIterator[EtcdClient]:
    client = await EtcdClient.connect([etcd.endpoint], timeout=10)
    try:
        yield client
    finally:
        await client.close()


async def test_two_compactors_compact_once_per_interval_one_interval_behind(
    fresh: EtcdClient,
) -> None:
    a, b = Compactor(fresh, "/mobkit", 3600), Compactor(fresh, "/mobkit", 3600)
    before: list[int] = []  # the store revision as each round (interval) starts
    per_round: list[list[int]] = []
    rounds = 6
    for n in range(rounds):
        before.append((await fresh.put("/mobkit/data", str(n))).header.revision)
        # Both replicas' timers fire once per interval, in either order.
        order = (a, b) if n % 2 == 0 else (b, a)
        results = [await c.compact_once() for c in order]
        per_round.append([r for r in results if r is not None])
    # The first round only starts the shared clock; then exactly one compaction per
    # round, by whichever replica won its CAS, never twice at the same revision.
    assert per_round[0] == [] and all(len(done) == 1 for done in per_round[1:])
    assert sorted(a.compacted + b.compacted) == [done[0] for done in per_round[1:]]
    key = await fresh.get(compaction_key("/mobkit"))
    assert key is not None and key.version == rounds
    # Each compaction is at a revision seen one interval earlier: history of the
    # previous interval survives, older history is gone.
    for n in range(1, rounds):
        (revision,) = per_round[n]
        assert before[n - 1] <= revision < before[n]
    latest = per_round[-1][0]
    with pytest.raises(EtcdCompacted):
        await fresh.range("/mobkit/data", revision=latest - 1)
    assert (await fresh.range("/mobkit/data", revision=latest)).kvs


async def test_compactor_runs_on_its_interval(fresh: EtcdClient) -> None:
    compactor = Compactor(fresh, "/mobkit", 0.2)
    compactor.start()
    try:
        await eventually(lambda: len(compactor.compacted) >= 2, timeout=30, what="compactions")
    finally:
        await compactor.stop()
    assert compactor.compacted == sorted(set(compactor.compacted))
