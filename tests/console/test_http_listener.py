"""The HTTP listener of the console (and of the tests' loopback model): connections
it accepts have TCP_NODELAY, so a response written in two pieces is not held back
by Nagle's algorithm until the client's delayed ACK (40 ms a request on Linux)."""

from __future__ import annotations

import socket

from mobkit.server.http_listener import http_listener


def test_accepted_connections_send_without_delay() -> None:
    listener = http_listener("127.0.0.1", 0)
    try:
        listener.setblocking(True)
        with socket.create_connection(listener.getsockname(), timeout=5):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.close()
    plain = socket.socket()
    try:  # what a socket has without it: the test above can tell the difference
        assert plain.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    finally:
        plain.close()
