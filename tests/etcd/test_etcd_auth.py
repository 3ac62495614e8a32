"""Username/password auth: token metadata, transparent token refresh, auth errors."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from mobkit.etcd import EtcdAuthError, EtcdClient
from mobkit.etcd.process import EtcdProcess

PASSWORD = "s3cret-pw"


def _etcdctl(proc: EtcdProcess, *args: str) -> None:
    etcdctl = proc.binary.parent / "etcdctl"
    subprocess.run(
        [str(etcdctl), f"--endpoints={proc.endpoint}", *args],
        check=True,
        capture_output=True,
        timeout=15,
    )


@pytest.fixture
def etcd_with_auth(tmp_path: Path):
    # Simple tokens live 1 s here, so a test can outlive its token.
    proc = EtcdProcess(tmp_path / "etcd", unsafe_no_fsync=True, extra_args=["--auth-token-ttl=1"])
    proc.start()
    try:
        _etcdctl(proc, "user", "add", f"root:{PASSWORD}", "--interactive=false")
        _etcdctl(proc, "user", "grant-role", "root", "root")
        _etcdctl(proc, "auth", "enable")
        yield proc
    finally:
        proc.kill()


async def test_authenticated_client_and_token_refresh(etcd_with_auth: EtcdProcess) -> None:
    async with await EtcdClient.connect(
        [etcd_with_auth.endpoint], username="root", password=PASSWORD
    ) as client:
        assert PASSWORD not in repr(client)
        await client.put("/a/k", "v")
        token = client._token
        await asyncio.sleep(2.5)  # past the token TTL: etcd rejects the old token
        kv = await client.get("/a/k")
        assert kv is not None and kv.value == b"v"
        assert client._token != token  # re-authenticated transparently

        lease_id, _ = await client.grant_lease(30)
        assert await client.keepalive_once(lease_id) == 30
        watch = client.watch("/a/k", start_revision=kv.mod_revision)
        async with asyncio.timeout(10):
            event = await anext(watch)
        assert event.kv.value == b"v"


async def test_wrong_password_and_anonymous_access(etcd_with_auth: EtcdProcess) -> None:
    with pytest.raises(EtcdAuthError) as info:
        await EtcdClient.connect([etcd_with_auth.endpoint], username="root", password="nope")
    assert "nope" not in str(info.value)
    async with await EtcdClient.connect([etcd_with_auth.endpoint]) as anonymous:
        with pytest.raises(EtcdAuthError):
            await anonymous.put("/a/k", "v")
