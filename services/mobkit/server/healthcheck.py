"""``python -m mobkit.server.healthcheck HOST:PORT [--service NAME]``: exit 0 if SERVING.

For container health checks (Docker, Kubernetes exec probes). It asks
``grpc.health.v1.Health/Check`` and prints one line on failure. TLS follows the
process's own settings (``MOBKIT_TLS_CA`` or ``MOBKIT_TLS_CLIENT_CA`` to verify
the server, ``MOBKIT_TLS_CERT``/``MOBKIT_TLS_KEY`` presented for mTLS), so a
container checks itself with the environment it already has. Health needs no
bearer token.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mobkit.security.tls import client_tls_from
from mobkit.server.config import load_settings


def check(
    address: str,
    service: str = "",
    *,
    timeout: float = 3.0,
    server_name: str | None = None,
) -> str:
    """The serving status name of ``service`` at ``address`` (raises grpc.RpcError)."""
    tls = client_tls_from(load_settings())
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    if tls is None:
        channel = grpc.insecure_channel(address, options=options)
    else:
        channel = grpc.secure_channel(address, tls.credentials(), options=options)
    with channel:
        # types-grpcio-health-checking's HealthStub declares no methods.
        reply = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
            health_pb2.HealthCheckRequest(service=service), timeout=timeout
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mobkit.server.healthcheck")
    parser.add_argument("address", help="HOST:PORT of a MobKit server")
    parser.add_argument("--service", default="", help="full service name (default: the server)")
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--server-name", help="name to verify in the server's certificate")
    args = parser.parse_args(argv)
    try:
        status = check(
            args.address, args.service, timeout=args.timeout, server_name=args.server_name
        )
    except grpc.RpcError as err:
        code = err.code() if isinstance(err, grpc.Call) else None
        print(f"unhealthy: {args.address}: {code.name if code else 'error'}", file=sys.stderr)
        return 1
    except Exception as exc:  # bad settings or files: still one line, never a traceback
        print(f"unhealthy: {args.address}: {exc}", file=sys.stderr)
        return 1
    if status != "SERVING":
        print(f"unhealthy: {args.address}: {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
