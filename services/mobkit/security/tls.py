"""TLS and mutual TLS from PEM files, for servers and for the channels that call them.

A server with a certificate and key serves TLS; given a client CA as well, it
requires every client to present a certificate signed by that CA (mTLS). The
same certificate and key are presented as the client certificate when this
process calls another MobKit service, so one identity per process suffices
(the dev CA issues server certificates usable for both purposes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from mobkit.core.errors import InvalidArgument

if TYPE_CHECKING:
    from mobkit.server.config import Settings


def _read(setting: str, path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgument(setting, f"cannot read {path}: {exc.strerror}") from exc


def server_credentials(
    cert_file: str | Path, key_file: str | Path, client_ca_file: str | Path | None = None
) -> grpc.ServerCredentials:
    """TLS server credentials; with ``client_ca_file`` clients must present a cert it signed."""
    chain = _read("tls_cert", cert_file)
    key = _read("tls_key", key_file)
    client_ca = _read("tls_client_ca", client_ca_file) if client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def server_credentials_from(settings: Settings) -> grpc.ServerCredentials | None:
    """None (plaintext) unless ``tls_cert`` and ``tls_key`` are set."""
    if not settings.tls_cert and not settings.tls_key:
        if settings.tls_client_ca:
            raise InvalidArgument("tls_client_ca", "mutual TLS needs tls_cert and tls_key too")
        return None
    if not (settings.tls_cert and settings.tls_key):
        raise InvalidArgument("tls_cert", "tls_cert and tls_key go together")
    return server_credentials(settings.tls_cert, settings.tls_key, settings.tls_client_ca)


@dataclass(frozen=True)
class ClientTLS:
    """How a client verifies a MobKit server and, for mTLS, proves who it is.

    ``ca_file`` None trusts the system roots. ``server_name`` overrides the name
    checked against the server certificate (e.g. when dialling an IP address
    whose certificate names a host).
    """

    ca_file: str | Path | None = None
    cert_file: str | Path | None = None
    key_file: str | Path | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert_file is None) != (self.key_file is None):
            raise InvalidArgument("tls_cert", "a client certificate needs its key, and back")
        return grpc.ssl_channel_credentials(
            root_certificates=_read("tls_ca", self.ca_file) if self.ca_file else None,
            private_key=_read("tls_key", self.key_file) if self.key_file else None,
            certificate_chain=_read("tls_cert", self.cert_file) if self.cert_file else None,
        )

    def options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def client_tls_from(settings: Settings) -> ClientTLS | None:
    """TLS for calls this process makes to other MobKit services (None: plaintext).

    The servers are verified with ``tls_ca`` (falling back to ``tls_client_ca``:
    with one CA for the whole suite it signs servers and clients alike), and this
    process's own ``tls_cert``/``tls_key`` are presented for mTLS.
    """
    ca = settings.tls_ca or settings.tls_client_ca
    if ca is None and settings.tls_cert is None:
        return None
    return ClientTLS(ca_file=ca, cert_file=settings.tls_cert, key_file=settings.tls_key)


def channel_credentials(
    tls: ClientTLS, call_credentials: grpc.CallCredentials | None = None
) -> grpc.ChannelCredentials:
    creds = tls.credentials()
    if call_credentials is not None:
        creds = grpc.composite_channel_credentials(creds, call_credentials)
    return creds


def secure_channel(
    target: str,
    tls: ClientTLS | None,
    *,
    token: str | None = None,
    options: Sequence[tuple[str, Any]] = (),
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """An asyncio channel to a MobKit service, with TLS and a bearer token when given.

    Without TLS the token still travels (as metadata added by an interceptor:
    gRPC refuses call credentials on plaintext channels) — fine on loopback,
    not across a network.
    """
    from mobkit.core.limits import MESSAGE_SIZE_OPTIONS
    from mobkit.security.auth import bearer_call_credentials, bearer_token_interceptors

    # Snapshots travel whole between the orchestrator and its providers.
    opts = [*MESSAGE_SIZE_OPTIONS, *options, *(tls.options() if tls else [])]
    if tls is None:
        extra = bearer_token_interceptors(token) if token else []
        return grpc.aio.insecure_channel(target, options=opts, interceptors=[*interceptors, *extra])
    call_creds = bearer_call_credentials(token) if token else None
    return grpc.aio.secure_channel(
        target, channel_credentials(tls, call_creds), options=opts, interceptors=interceptors
    )


def channel_for(target: str, settings: Settings, **kwargs: Any) -> grpc.aio.Channel:
    """The channel an in-suite caller (orchestrator -> provider) opens to ``target``."""
    from mobkit.security.auth import read_token_file

    token = read_token_file(settings.call_token_file) if settings.call_token_file else None
    return secure_channel(target, client_tls_from(settings), token=token, **kwargs)
