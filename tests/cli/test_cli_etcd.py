"""``mobkit etcd``: status, compact, defrag, disarm and recover against a real etcd,
and the exit codes of clients/README.md when etcd cannot be reached."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mobkit.cli import main
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.errors import EtcdCompacted
from mobkit.etcd.process import EtcdProcess, free_ports


def _revision(endpoint: str) -> int:
    async def put() -> int:
        async with await EtcdClient.connect([endpoint]) as client:
            await client.put("/mobkit/x", b"1")
            return int((await client.put("/mobkit/x", b"2")).header.revision)

    return asyncio.run(put())


def test_status_compact_defrag_disarm(
    etcd: EtcdProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    ep = ["--etcd-endpoints", etcd.endpoint]
    revision = _revision(etcd.endpoint)
    assert main(["etcd", "status", *ep, "--json"]) == 0
    (member,) = json.loads(capsys.readouterr().out)
    assert member["endpoint"] == etcd.endpoint and member["leader"] is True
    assert member["db_size"] >= member["db_size_in_use"] > 0 and member["alarms"] == []

    assert main(["etcd", "compact", *ep]) == 0
    assert f"compacted etcd at revision {revision}" in capsys.readouterr().out

    async def read_old() -> None:
        async with await EtcdClient.connect([etcd.endpoint]) as client:
            await client.range("/mobkit/x", revision=revision - 1)

    with pytest.raises(EtcdCompacted):
        asyncio.run(read_old())
    assert main(["etcd", "defrag", *ep]) == 0
    assert f"defragmented {etcd.endpoint}" in capsys.readouterr().out
    assert main(["etcd", "disarm", *ep]) == 0
    assert "no NOSPACE alarm raised" in capsys.readouterr().out
    assert main(["etcd", "status", *ep]) == 0
    out = capsys.readouterr()
    assert "ENDPOINT" in out.out and "out of space" not in out.err


def test_unreachable_etcd_exits_6_and_no_endpoints_is_usage(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MOBKIT_ETCD_ENDPOINTS", raising=False)
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    assert main(["etcd", "status", "--etcd-endpoints", dead, "--timeout", "1"]) == 6
    assert capsys.readouterr().err.startswith("mobkit etcd status: UNAVAILABLE: ")
    assert main(["etcd", "recover", "--etcd-endpoints", dead, "--timeout", "1", "--json"]) == 6
    error = json.loads(capsys.readouterr().err)["error"]
    assert (error["reason"], error["exit_code"]) == ("UNAVAILABLE", 6)
    assert main(["etcd", "status", "--data-dir", str(tmp_path)]) == 2
    assert "no etcd endpoints" in capsys.readouterr().err


def test_without_endpoints_it_finds_the_etcd_mobkit_up_runs(
    etcd: EtcdProcess,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("MOBKIT_ETCD_ENDPOINTS", raising=False)
    data = tmp_path / "up"
    (data / "etcd").mkdir(parents=True)
    ports = {"client": etcd.client_port, "peer": etcd.peer_port}
    (data / "etcd" / "ports.json").write_text(json.dumps(ports))
    assert main(["etcd", "status", "--data-dir", str(data), "--json"]) == 0
    (member,) = json.loads(capsys.readouterr().out)
    assert member["endpoint"] == f"http://127.0.0.1:{etcd.client_port}"
