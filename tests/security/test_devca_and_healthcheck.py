"""The dev CA's certificates, TLS settings validation, and the container health check
(run as the subprocess Docker would run) against a real mTLS server."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from security_support import Suite

from mobkit.core.errors import InvalidArgument
from mobkit.security.commands import run_dev_ca
from mobkit.security.devca import make_dev_ca
from mobkit.security.tls import client_tls_from, server_credentials_from
from mobkit.server.config import load_settings


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_dev_ca_certificates(tmp_path: Path) -> None:
    files = make_dev_ca(tmp_path, hosts=["lease", "10.1.2.3"])
    ca, server, client = _cert(files.ca_cert), _cert(files.server_cert), _cert(files.client_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for leaf in (server, client):
        assert leaf.issuer == ca.subject
        leaf.verify_directly_issued_by(ca)
        assert leaf.not_valid_after_utc > datetime.now(UTC)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "lease"} <= set(san.get_values_for_type(x509.DNSName))
    ips = set(san.get_values_for_type(x509.IPAddress))
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.1.2.3")} <= ips
    usages = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
    client_usages = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(client_usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    for key in (files.ca_key, files.server_key, files.client_key):
        assert key.stat().st_mode & 0o077 == 0, key


def test_dev_ca_refuses_to_overwrite_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(directory=str(tmp_path), host=[], days=30, force=False)
    assert run_dev_ca(args) == 0
    assert "MOBKIT_TLS_CLIENT_CA" in capsys.readouterr().out
    first = (tmp_path / "ca.pem").read_bytes()
    with pytest.raises(FileExistsError):
        run_dev_ca(args)
    assert (tmp_path / "ca.pem").read_bytes() == first
    args.force = True
    assert run_dev_ca(args) == 0
    assert (tmp_path / "ca.pem").read_bytes() != first


def test_tls_settings_go_together(tmp_path: Path) -> None:
    files = make_dev_ca(tmp_path)
    assert server_credentials_from(load_settings(env={})) is None
    assert client_tls_from(load_settings(env={})) is None
    with pytest.raises(InvalidArgument):
        server_credentials_from(load_settings(env={"MOBKIT_TLS_CERT": str(files.server_cert)}))
    with pytest.raises(InvalidArgument):
        server_credentials_from(load_settings(env={"MOBKIT_TLS_CLIENT_CA": str(files.ca_cert)}))
    with pytest.raises(InvalidArgument) as info:
        server_credentials_from(
            load_settings(
                env={"MOBKIT_TLS_CERT": str(tmp_path / "missing.pem"), "MOBKIT_TLS_KEY": "x"}
            )
        )
    assert "missing.pem" in str(info.value)
    env = files.settings_env()
    assert server_credentials_from(load_settings(env=env)) is not None
    tls = client_tls_from(load_settings(env=env))
    assert tls is not None and tls.ca_file == str(files.ca_cert)


async def _healthcheck(address: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mobkit.server.healthcheck",
        address,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("MOBKIT_")}, **env},
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_healthcheck_module_over_mtls(suite: Suite) -> None:
    env = suite.ca.settings_env()  # what a container of the suite has
    assert await _healthcheck(suite.target, env) == (0, "")
    code, err = await _healthcheck(suite.target, {})  # plaintext against an mTLS server
    assert code == 1 and err.startswith("unhealthy:")
    await suite.server.stop(0)
    code, err = await _healthcheck(suite.target, env)
    assert code == 1 and "UNAVAILABLE" in err
