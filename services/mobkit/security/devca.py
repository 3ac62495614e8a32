"""A local certificate authority for development and the embedded default.

``mobkit dev-ca DIR`` writes::

    ca.pem  ca-key.pem          the CA (keep ca-key.pem to issue more later)
    server.pem  server-key.pem  for every service (SAN localhost, 127.0.0.1, ::1 and
                                any --host); also usable as a client certificate,
                                so services present it when they call each other
    client.pem  client-key.pem  for CLIs and applications

then prints the settings that turn on mTLS. Keys are ECDSA P-256 and written
0600. Not for production: a real deployment brings certificates from its own PKI.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class DevCAFiles:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server-key.pem"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / "client-key.pem"

    def all(self) -> list[Path]:
        return [
            self.ca_cert,
            self.ca_key,
            self.server_cert,
            self.server_key,
            self.client_cert,
            self.client_key,
        ]

    def settings_env(self) -> dict[str, str]:
        """``MOBKIT_*`` variables that serve mTLS with these files."""
        return {
            "MOBKIT_TLS_CERT": str(self.server_cert),
            "MOBKIT_TLS_KEY": str(self.server_key),
            "MOBKIT_TLS_CLIENT_CA": str(self.ca_cert),
            "MOBKIT_TLS_CA": str(self.ca_cert),
        }


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MobKit dev"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Issuer:
    """A CA certificate and its key, able to sign leaf certificates."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, common_name: str = "MobKit dev CA", *, days: int = 3650) -> Issuer:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_file: Path, key_file: Path) -> Issuer:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_file}: expected an EC private key")
        return cls(cert, key)

    def issue(
        self,
        common_name: str,
        *,
        hosts: Sequence[str] = (),
        server: bool = True,
        client: bool = True,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A leaf certificate for ``hosts`` (SANs) valid for the given purposes."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
        usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(minutes=5))
            .not_valid_after(not_after or now + timedelta(days=825))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
        )
        if hosts:
            builder = builder.add_extension(_san(hosts), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key


def write_pem(path: Path, data: bytes, *, private: bool) -> None:
    """Write ``data``; private keys are created 0600 so they are never world-readable."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    if private:
        path.chmod(0o600)


def make_dev_ca(
    directory: str | Path,
    *,
    hosts: Sequence[str] = (),
    days: int = 825,
    force: bool = False,
) -> DevCAFiles:
    """Create the CA, a server certificate for DEFAULT_HOSTS + ``hosts``, and a client one."""
    files = DevCAFiles(Path(directory))
    existing = [p for p in files.all() if p.exists()]
    if existing and not force:
        raise FileExistsError(f"{existing[0]} exists (use --force to replace the dev CA)")
    files.directory.mkdir(parents=True, exist_ok=True)
    ca = Issuer.create(days=max(days, 1) + 1)
    now = datetime.now(UTC)
    until = now + timedelta(days=days)
    server, server_key = ca.issue("mobkit-server", hosts=[*DEFAULT_HOSTS, *hosts], not_after=until)
    client, client_key = ca.issue("mobkit-client", server=False, not_after=until)
    write_pem(files.ca_cert, _pem_cert(ca.cert), private=False)
    write_pem(files.ca_key, _pem_key(ca.key), private=True)
    write_pem(files.server_cert, _pem_cert(server), private=False)
    write_pem(files.server_key, _pem_key(server_key), private=True)
    write_pem(files.client_cert, _pem_cert(client), private=False)
    write_pem(files.client_key, _pem_key(client_key), private=True)
    return files
