"""``python -m mobkit.console.healthcheck HOST:PORT``: exit 0 if the console answers.

The console's container health check (the image has no curl): ``GET /healthz``,
over HTTPS when the process serves TLS (``MOBKIT_TLS_CERT`` set; the certificate
is not verified: this asks a server on the same host whether it is up).
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import urllib.request
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mobkit.console.healthcheck")
    parser.add_argument("address", help="HOST:PORT the console serves on")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    tls = bool(os.environ.get("MOBKIT_TLS_CERT"))
    context = None
    if tls:  # a probe of this host's own server: up or not, not who it is
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    url = f"{'https' if tls else 'http'}://{args.address}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout, context=context) as reply:
            ok = reply.status == 200
    except OSError as exc:
        print(f"unhealthy: {args.address}: {exc}", file=sys.stderr)
        return 1
    if not ok:
        print(f"unhealthy: {args.address}: HTTP {reply.status}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
