"""The listening socket of an HTTP server MobKit runs on uvicorn (the console; the
loopback model of the tests).

``TCP_NODELAY`` is set on the listener, so every accepted connection has it: uvicorn
writes a response's head and its body separately, and with Nagle's algorithm on the
body waits for the client to acknowledge the head, which a Linux client delays by
up to 40 ms. That was 40 ms added to every request.
"""

from __future__ import annotations

import socket


def http_listener(host: str, port: int) -> socket.socket:
    """Bound to ``host:port`` (0: a free port), listening, non-blocking."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
