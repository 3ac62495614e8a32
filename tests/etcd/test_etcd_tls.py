"""TLS: server certificates verified against a CA, and client-certificate auth."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mobkit.etcd import EtcdClient, EtcdTLS, EtcdUnavailable
from mobkit.etcd.process import EtcdProcess, EtcdServerTLS


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    d = tmp_path_factory.mktemp("pki")
    days = ["-days", "2"]
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=mobkit-test-ca",
        *days,
        cwd=d,
    )
    for name, ext in [
        ("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth"),
        ("client", "extendedKeyUsage=clientAuth"),
    ]:
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
            cwd=d,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-extfile",
            f"{name}.ext",
            *days,
            cwd=d,
        )
    return d


@pytest.fixture
def etcd_mtls(tmp_path: Path, pki: Path) -> Iterator[EtcdProcess]:
    proc = EtcdProcess(
        tmp_path / "etcd",
        unsafe_no_fsync=True,
        tls=EtcdServerTLS(
            cert_file=pki / "server.crt",
            key_file=pki / "server.key",
            ca_file=pki / "ca.crt",
            client_cert_auth=True,
        ),
        health_tls=EtcdTLS(
            ca_file=pki / "ca.crt", cert_file=pki / "client.crt", key_file=pki / "client.key"
        ),
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.kill()


async def test_mutual_tls_round_trip(etcd_mtls: EtcdProcess, pki: Path) -> None:
    assert etcd_mtls.endpoint.startswith("https://")
    tls = EtcdTLS(ca_file=pki / "ca.crt", cert_file=pki / "client.crt", key_file=pki / "client.key")
    async with await EtcdClient.connect([etcd_mtls.endpoint], tls=tls) as client:
        await client.put("/tls/k", "v")
        kv = await client.get("/tls/k")
        assert kv is not None and kv.value == b"v"


async def test_tls_without_client_certificate_is_refused(etcd_mtls: EtcdProcess, pki: Path) -> None:
    tls = EtcdTLS(ca_file=pki / "ca.crt")
    async with await EtcdClient.connect([etcd_mtls.endpoint], tls=tls, timeout=2.0) as client:
        with pytest.raises(EtcdUnavailable):
            await client.get("/tls/k")


async def test_plaintext_client_cannot_talk_to_tls_server(etcd_mtls: EtcdProcess) -> None:
    async with await EtcdClient.connect([etcd_mtls.address], timeout=2.0) as client:
        with pytest.raises(EtcdUnavailable):
            await client.get("/tls/k")
