"""The client over mutual TLS with bearer tokens, against a suite that demands both."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from client_support import TEAM, wait_active

from mobkit.client import (
    BackendUnavailable,
    ClientOptions,
    ClientTLS,
    MobKit,
    PermissionDenied,
    Unauthenticated,
)
from mobkit.etcd.process import EtcdProcess
from mobkit.security.auth import issue_token
from mobkit.security.devca import DevCAFiles, make_dev_ca
from mobkit.testing.processes import ServeProcess
from mobkit.testing.suite import suite_process, write_roster


@dataclass
class Secured:
    proc: ServeProcess
    ca: DevCAFiles
    read: str
    admin: str
    tmp: Path

    @property
    def address(self) -> str:
        assert self.proc.address is not None
        return self.proc.address

    def tls(self) -> ClientTLS:
        return ClientTLS(self.ca.ca_cert, self.ca.client_cert, self.ca.client_key)


@pytest.fixture(scope="module")
def secured(
    etcd_session: EtcdProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Secured]:
    tmp = tmp_path_factory.mktemp("secured")
    ca = make_dev_ca(tmp / "ca")
    tokens = tmp / "tokens.toml"
    read = issue_token(tokens, "dashboard", ["read"])
    admin = issue_token(tokens, "operator", ["admin"])
    roster = write_roster(tmp / "roster.toml", TEAM, internal=["erin"])
    proc = suite_process(
        tmp,
        etcd_session.endpoint,
        roster,
        prefix=f"/secured-{uuid.uuid4().hex[:8]}",
        extra=[
            *("--tls-cert", str(ca.server_cert), "--tls-key", str(ca.server_key)),
            *("--tls-client-ca", str(ca.ca_cert), "--auth-tokens-file", str(tokens)),
        ],
    )
    with proc:
        secured = Secured(proc, ca, read, admin, tmp)
        options = ClientOptions(secured.address, tls=secured.tls(), token=admin)
        wait_active(secured.address, TEAM, options=options)
        yield secured


def test_mutual_tls_and_a_token_reach_the_suite(secured: Secured) -> None:
    with MobKit(secured.address, tls=secured.tls(), token=secured.admin) as mk:
        assert mk.status("alice").identity == "alice"
        assert mk.send("alice", "hello").identity == "alice"
    assert "admin" not in repr(ClientOptions(token=secured.admin))  # never in repr


def test_missing_or_weak_tokens_raise_typed_errors(secured: Secured) -> None:
    anonymous = MobKit(secured.address, tls=secured.tls())
    with anonymous, pytest.raises(Unauthenticated) as no_token:
        anonymous.status("alice")
    assert no_token.value.reason == "UNAUTHENTICATED"

    with MobKit(secured.address, tls=secured.tls(), token=secured.read) as reader:
        assert reader.status("alice").identity == "alice"
        with pytest.raises(PermissionDenied) as weak:
            reader.send("alice", "hello")
    assert weak.value.metadata["required_scope"] == "write"

    plaintext = MobKit(secured.address, token=secured.admin, timeout=2)
    with plaintext, pytest.raises(BackendUnavailable):
        plaintext.status("alice")  # a TLS server does not answer plaintext


def test_cli_uses_tls_files_and_a_token_file(secured: Secured) -> None:
    token_file = secured.tmp / "admin.token"
    token_file.write_text(secured.admin + "\n")
    tls = [
        *("--tls-ca", str(secured.ca.ca_cert)),
        *("--tls-cert", str(secured.ca.client_cert), "--tls-key", str(secured.ca.client_key)),
    ]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mobkit.cli", *args, "--addr", secured.address, *tls],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    ok = cli("status", "alice", "--token-file", str(token_file))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[1].split()[:2] == ["alice", "active"]

    denied = cli("status", "alice")
    assert denied.returncode == 7
    assert denied.stderr.startswith("mobkit status: UNAUTHENTICATED: ")
    assert secured.admin not in ok.stderr + denied.stderr
