"""One gRPC channel over every etcd endpoint.

Several endpoints become one static target (``ipv4:10.0.0.1:2379,10.0.0.2:2379``) with
``round_robin``: a member that dies drops out of the picker as soon as its connection
breaks (or keepalive pings go unanswered), and calls continue on the others. Idempotent
reads are retried on ``UNAVAILABLE`` by gRPC itself; writes are not (etcd may have applied
a write whose reply was lost), callers decide.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc

_IDEMPOTENT_METHODS = [
    ("etcdserverpb.KV", "Range"),
    ("etcdserverpb.Lease", "LeaseTimeToLive"),
    ("etcdserverpb.Lease", "LeaseLeases"),
    ("etcdserverpb.Maintenance", "Status"),
    ("etcdserverpb.Maintenance", "Alarm"),  # GET, and DEACTIVATE, are idempotent
    ("etcdserverpb.Cluster", "MemberList"),
    ("etcdserverpb.Auth", "Authenticate"),
]

_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": s, "method": m} for s, m in _IDEMPOTENT_METHODS],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)


@dataclass(frozen=True)
class EtcdTLS:
    """TLS material, as file paths. ``ca_file=None`` trusts the system roots.

    ``cert_file``/``key_file`` enable client-certificate auth. ``server_name`` overrides
    the name checked against the server certificate (useful when several members are
    dialled by IP and share one certificate name).
    """

    ca_file: str | Path | None = None
    cert_file: str | Path | None = None
    key_file: str | Path | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("EtcdTLS needs both cert_file and key_file, or neither")

        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path is not None else None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_file),
            private_key=read(self.key_file),
            certificate_chain=read(self.cert_file),
        )


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    secure: bool | None  # None: no scheme given

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoint(raw: str) -> Endpoint:
    """``http://h:p``, ``https://h:p``, ``h:p`` or ``[v6]:p``; the port defaults to 2379."""
    text = raw.strip()
    scheme = None
    if "://" in text:
        scheme, _, _ = text.partition("://")
        if scheme not in ("http", "https"):
            raise ValueError(f"unsupported etcd endpoint scheme in {raw!r}")
    else:
        text = f"//{text}"
    parts = urlsplit(text)
    if not parts.hostname:
        raise ValueError(f"etcd endpoint {raw!r} has no host")
    try:
        port = parts.port or 2379
    except ValueError as exc:
        raise ValueError(f"etcd endpoint {raw!r} has an invalid port") from exc
    secure = None if scheme is None else scheme == "https"
    return Endpoint(parts.hostname, port, secure)


def _resolve(ep: Endpoint) -> list[tuple[socket.AddressFamily, str]]:
    if ep.is_ip:
        family = socket.AF_INET6 if ":" in ep.host else socket.AF_INET
        return [(family, ep.host)]
    infos = socket.getaddrinfo(ep.host, ep.port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys((info[0], str(info[4][0])) for info in infos))


def build_target(endpoints: Sequence[Endpoint]) -> str:
    """A gRPC target reaching every endpoint.

    One endpoint keeps its name (gRPC re-resolves DNS on reconnect). Several are resolved
    now into one static ``ipv4:``/``ipv6:`` list, since gRPC Python has no pluggable
    resolver; names that later move need a new client.
    """
    if not endpoints:
        raise ValueError("at least one etcd endpoint is required")
    if len(endpoints) == 1:
        return endpoints[0].hostport()
    by_family: dict[socket.AddressFamily, list[str]] = {}
    for ep in endpoints:
        for family, addr in _resolve(ep):
            hp = f"[{addr}]:{ep.port}" if family == socket.AF_INET6 else f"{addr}:{ep.port}"
            by_family.setdefault(family, [])
            if hp not in by_family[family]:
                by_family[family].append(hp)
    if socket.AF_INET in by_family:
        # Mixed families cannot share one static target; IPv4 is the common case.
        return "ipv4:" + ",".join(by_family[socket.AF_INET])
    return "ipv6:" + ",".join(by_family[socket.AF_INET6])


def channel_options(
    endpoints: Sequence[Endpoint],
    *,
    keepalive_time: float,
    keepalive_timeout: float,
    tls: EtcdTLS | None,
) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", _SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
        # Detect a hung (not closed) member; etcd accepts pings no more often than every 5 s,
        # and only while a call or stream is open (its enforcement policy does not permit
        # pings without streams: it answers GOAWAY "too_many_pings", killing calls in flight).
        ("grpc.keepalive_time_ms", int(keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", int(keepalive_timeout * 1000)),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),
        # A restarted member should be reused within about a second, not after gRPC's
        # default exponential backoff of up to two minutes.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ]
    if len(endpoints) > 1:
        options.append(("grpc.default_authority", endpoints[0].hostport()))
    if tls is not None:
        name = tls.server_name or (endpoints[0].host if len(endpoints) > 1 else None)
        if name:
            options.append(("grpc.ssl_target_name_override", name))
    return options


def open_channel(
    raw_endpoints: Sequence[str],
    *,
    tls: EtcdTLS | None,
    keepalive_time: float,
    keepalive_timeout: float,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    if isinstance(raw_endpoints, str):
        raise TypeError("endpoints must be a sequence of strings, not one string")
    endpoints = [parse_endpoint(e) for e in raw_endpoints]
    schemes = {e.secure for e in endpoints if e.secure is not None}
    if len(schemes) > 1:
        raise ValueError("etcd endpoints mix http:// and https://")
    if True in schemes and tls is None:
        tls = EtcdTLS()
    if False in schemes and tls is not None:
        raise ValueError("TLS settings given for http:// etcd endpoints")
    target = build_target(endpoints)
    options = channel_options(
        endpoints, keepalive_time=keepalive_time, keepalive_timeout=keepalive_timeout, tls=tls
    )
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(
        target, tls.credentials(), options=options, interceptors=interceptors
    )
