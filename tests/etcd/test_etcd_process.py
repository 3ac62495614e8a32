"""EtcdProcess: restarts keep data and ports; processes are cleaned up."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from mobkit.etcd import EtcdClient, EtcdUnavailable
from mobkit.etcd.process import EtcdProcess, find_etcd_binary
from mobkit.testing.etcd_member import EtcdMember


@pytest.mark.parametrize("graceful", [True, False], ids=["sigterm", "sigkill"])
async def test_restart_on_same_data_dir_keeps_data(etcd: EtcdProcess, graceful: bool) -> None:
    port, pid = etcd.client_port, etcd.pid
    async with await EtcdClient.connect([etcd.endpoint]) as client:
        written = await client.put("/p/k", "kept")
        lease_id, _ = await client.grant_lease(60)

        await etcd.restart_async(graceful=graceful)
        assert etcd.client_port == port and etcd.pid != pid

        kv = await client.get("/p/k")
        assert kv is not None
        assert (kv.value, kv.mod_revision) == (b"kept", written.header.revision)
        assert lease_id in await client.leases()


def test_sync_lifecycle_and_context_manager(tmp_path: Path) -> None:
    with EtcdProcess(tmp_path / "e", unsafe_no_fsync=True) as proc:
        assert proc.running and proc.endpoint.startswith("http://127.0.0.1:")
        pid = proc.pid
        assert pid is not None
        proc.restart()
        assert proc.running and proc.pid != pid
    assert not proc.running
    assert proc.log_path.stat().st_size > 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def thread_states(pid: int) -> set[str]:
    """The state letters of the process's threads (``T``: stopped)."""
    tasks = Path(f"/proc/{pid}/task")
    return {(t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in tasks.iterdir()}


async def test_pause_and_resume(etcd: EtcdMember) -> None:
    async with await EtcdClient.connect([etcd.endpoint], timeout=1.0) as client:
        await client.put("/p/k", "1")
        etcd.pause()
        assert etcd.paused
        # kill(SIGSTOP) returns before the threads stop; pause() waits until they all have.
        assert etcd.pid is not None and thread_states(etcd.pid) == {"T"}
        with pytest.raises(EtcdUnavailable):
            await client.range("/p/k")
        etcd.resume()
        async with asyncio.timeout(10):
            kv = await client.get("/p/k")
        assert kv is not None and kv.value == b"1"


def test_a_paused_member_still_stops_and_restarts_unpaused(tmp_path: Path) -> None:
    member = EtcdMember(tmp_path / "m", unsafe_no_fsync=True).start()
    try:
        member.pause()
        member.restart()  # graceful: SIGTERM reaches it once it is resumed
        assert member.running and not member.paused
        member.pause()
        member.stop()
        assert not member.running and not member.paused
    finally:
        member.kill()


def test_two_processes_get_distinct_ports(tmp_path: Path) -> None:
    with (
        EtcdProcess(tmp_path / "a", unsafe_no_fsync=True) as a,
        EtcdProcess(tmp_path / "b", unsafe_no_fsync=True) as b,
    ):
        ports = {a.client_port, a.peer_port, b.client_port, b.peer_port}
        assert len(ports) == 4


def test_binary_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = find_etcd_binary()
    monkeypatch.setenv("MOBKIT_ETCD_BIN", str(real))
    assert find_etcd_binary() == real
    monkeypatch.setenv("MOBKIT_ETCD_BIN", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError):
        find_etcd_binary()


def test_a_long_etcd_log_is_rotated_at_start(tmp_path: Path) -> None:
    from mobkit.etcd.process import LOG_ROTATE_BYTES, _rotate

    log = tmp_path / "etcd.log"
    log.write_bytes(b"x" * (LOG_ROTATE_BYTES + 1))
    _rotate(log)
    assert not log.exists() and (tmp_path / "etcd.log.1").stat().st_size == LOG_ROTATE_BYTES + 1
    log.write_bytes(b"short")
    _rotate(log)  # below the bound: left alone
    assert log.read_bytes() == b"short"
