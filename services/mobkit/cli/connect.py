"""Options shared by the client commands and how they become a client.

They are accepted before the command (``mobkit --addr X status``) and after it
(``mobkit status --addr X``). Defaults come from the environment, as for the
library (:meth:`mobkit.client.ClientOptions.from_env`): ``MOBKIT_ADDR``,
``MOBKIT_TOKEN`` / ``MOBKIT_CALL_TOKEN_FILE``, ``MOBKIT_TLS_CA``,
``MOBKIT_TLS_CERT``, ``MOBKIT_TLS_KEY``. The token is never a flag value: flags
show up in ``ps`` and shell history.
"""

from __future__ import annotations

import argparse
from typing import Any

from mobkit.client import ClientOptions, RetryPolicy, tls_from
from mobkit.client.options import DEFAULT_ADDRESS, DEFAULT_TIMEOUT
from mobkit.security.auth import read_token_file

DEFAULT_RETRIES = 3
RECONCILE_TIMEOUT = 300.0  # `mobkit reconcile` waits for every activation


def add_client_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """On the top-level parser the options get defaults; on a command's parser they are
    only set when given (SUPPRESS), so either position works."""

    def default(value: Any) -> Any:
        return value if top_level else argparse.SUPPRESS

    group = parser.add_argument_group("connection (client commands)")
    group.add_argument(
        "--addr",
        metavar="HOST:PORT",
        default=default(None),
        help=f"the orchestrator [default: {DEFAULT_ADDRESS}, where `mobkit up` listens; "
        "env MOBKIT_ADDR]",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="JSON output for scripts, errors as one JSON object on stderr [default: off]",
    )
    group.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=default(None),
        help=f"deadline of each call, retries included [default: {DEFAULT_TIMEOUT:g} s; "
        f"reconcile: {RECONCILE_TIMEOUT:g} s]",
    )
    group.add_argument(
        "--retries",
        type=int,
        metavar="N",
        default=default(DEFAULT_RETRIES),
        help=f"retries of idempotent calls on UNAVAILABLE [default: {DEFAULT_RETRIES}]",
    )
    group.add_argument(
        "--tls",
        action="store_true",
        default=default(False),
        help="use TLS (implied by --tls-ca/--tls-cert); without --tls-ca trusts the system "
        "roots [default: off]",
    )
    group.add_argument(
        "--tls-ca",
        dest="ca_file",
        metavar="FILE",
        default=default(None),
        help="CA file verifying the server [default: none; env MOBKIT_TLS_CA, else "
        "MOBKIT_TLS_CLIENT_CA]",
    )
    group.add_argument(
        "--tls-cert",
        dest="cert_file",
        metavar="FILE",
        default=default(None),
        help="client certificate (mTLS) [default: none; env MOBKIT_TLS_CERT]",
    )
    group.add_argument(
        "--tls-key",
        dest="key_file",
        metavar="FILE",
        default=default(None),
        help="key of --tls-cert [default: none; env MOBKIT_TLS_KEY]",
    )
    group.add_argument(
        "--tls-server-name",
        dest="server_name",
        metavar="NAME",
        default=default(None),
        help="name to verify in the server certificate, when dialling an IP [default: the "
        "host of --addr; env MOBKIT_TLS_SERVER_NAME]",
    )
    group.add_argument(
        "--token-file",
        metavar="FILE",
        default=default(None),
        help="file holding a bearer token [default: none; env MOBKIT_CALL_TOKEN_FILE, or the "
        "token itself in MOBKIT_TOKEN]",
    )


def client_options(args: argparse.Namespace, *, timeout: float | None = None) -> ClientOptions:
    """Flags over the environment. ``timeout`` is the command's default deadline."""
    overrides: dict[str, Any] = {
        "address": args.addr,
        "timeout": args.timeout or timeout,
        "retry": RetryPolicy(max_attempts=1 + max(args.retries, 0)),
    }
    if args.token_file:
        overrides["token"] = read_token_file(args.token_file)
    tls = tls_from(
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
        server_name=args.server_name,
        force=args.tls,
    )
    if tls is not None:
        overrides["tls"] = tls
    return ClientOptions.from_env(**overrides)
