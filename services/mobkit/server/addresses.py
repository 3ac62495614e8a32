"""The addresses a process is configured with, checked before anything starts.

``HOST:PORT`` settings must carry a port in range (gRPC would otherwise bind
``99999`` modulo 65536, somewhere else), etcd endpoints must be ``http://`` or
``https://`` URLs (a bare word such as ``bogus`` would be dialled as a host name),
and an address this process is to listen on must be free: each mistake is one
line naming the setting and the value, before etcd, modules or the roster start.
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from mobkit.core.errors import InvalidArgument

if TYPE_CHECKING:
    from mobkit.server.config import Settings

LISTEN_SETTINGS = ("listen", "metrics_listen", "console_listen")
"""Addresses this process binds: port 0 (any free port) is allowed."""
OFF = "off"
"""``--console-listen off``: no console."""
DIAL_SETTINGS = (
    "advertise",
    "orchestrator_addr",
    "lease_addr",
    "continuity_addr",
    "roster_addr",
    "topology_addr",
    "customizer_addr",
    "runtime_addr",
)
"""Addresses this process dials or announces: they need a real port."""
MAX_PORT = 65535


def host_port(name: str, value: str, *, allow_any_port: bool) -> tuple[str, int]:
    """``value`` as (host, port), or :class:`InvalidArgument` naming ``name``."""
    host, sep, port = value.strip().rpartition(":")
    lowest = 0 if allow_any_port else 1
    if not sep or not host or not port.isdigit():
        raise InvalidArgument(name, f"expected HOST:PORT, got {value!r}")
    if not lowest <= int(port) <= MAX_PORT:
        raise InvalidArgument(
            name, f"port {int(port)} of {value!r} is out of range ({lowest}-{MAX_PORT})"
        )
    return host.strip("[]"), int(port)


def check_etcd_url(value: str) -> None:
    """``http://HOST[:PORT]`` or ``https://HOST[:PORT]`` (etcd's default port is 2379)."""
    expected = "expected http://HOST:PORT or https://HOST:PORT"
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument("etcd_endpoints", f"{value!r} is not an etcd URL ({expected})")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidArgument("etcd_endpoints", f"{value!r} has a path or query ({expected})")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= MAX_PORT:
        raise InvalidArgument(
            "etcd_endpoints", f"{value!r} has an invalid port (1-{MAX_PORT}; {expected})"
        )


def check_addresses(settings: Settings) -> None:
    """Every address setting well formed (called by ``Settings.validate``)."""
    for name in LISTEN_SETTINGS + DIAL_SETTINGS:
        value = getattr(settings, name)
        if value and not (name == "console_listen" and value == OFF):
            host_port(name, value, allow_any_port=name in LISTEN_SETTINGS)
    for url in settings.etcd_endpoints:
        check_etcd_url(url)


def bind_problem(host: str, port: int) -> str | None:
    """Why a listener on ``host:port`` cannot be opened now (None: it can).

    Binds as gRPC does (``SO_REUSEADDR``, so a port in TIME_WAIT counts as free) and
    closes again at once; someone may still take the port before the real bind, which
    then fails with the same kind of message.
    """
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve {host!r} ({exc.strerror})"
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return "address already in use"
                return exc.strerror or str(exc)
    return None


def listen_problem(value: str) -> str:
    """Why the listener on ``value`` could not be opened, for an error message."""
    try:
        host, port = host_port("listen", value, allow_any_port=True)
    except InvalidArgument as exc:
        return exc.detail
    return bind_problem(host, port) or "the address cannot be bound"


def check_listen_free(settings: Settings) -> None:
    """Each address this process is to listen on can be bound, or ``OSError`` with one
    line naming the setting, the address and why. (The console is not checked: a busy
    console port costs the console, not the suite.)"""
    for name in LISTEN_SETTINGS:
        if name == "console_listen":
            continue
        value = getattr(settings, name)
        if not value:
            continue
        host, port = host_port(name, value, allow_any_port=True)
        problem = bind_problem(host, port)
        if problem is not None:
            raise OSError(f"cannot listen on {value} (--{name.replace('_', '-')}): {problem}")
