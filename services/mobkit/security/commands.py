"""CLI glue for ``mobkit dev-ca DIR`` and ``mobkit token create NAME``.

Each command is an ``add_*_arguments(parser)`` plus a ``run_*(args) -> exit code``
so ``mobkit.cli`` only registers them.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta

from mobkit.core.errors import InvalidArgument
from mobkit.security.auth import issue_token
from mobkit.security.devca import DEFAULT_HOSTS, make_dev_ca


def add_dev_ca_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", metavar="DIR", help="where to write the CA and certificates")
    parser.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME",
        help="extra DNS name or IP for the server certificate (repeatable), e.g. lease "
        f"[default: {', '.join(DEFAULT_HOSTS)} only]",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=825,
        metavar="DAYS",
        help="validity of the certificates [default: 825 days]",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace an existing dev CA [default: refuse]"
    )


def run_dev_ca(args: argparse.Namespace) -> int:
    files = make_dev_ca(args.directory, hosts=args.host, days=args.days, force=args.force)
    print(f"dev CA written to {files.directory}")
    print("serve with mutual TLS (or put the same keys in the --config file):")
    for name, value in files.settings_env().items():
        print(f"  export {name}={value}")
    print(f"clients trust {files.ca_cert} and present {files.client_cert} / {files.client_key}")
    return 0


def add_token_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", metavar="NAME", help="who the token is for (shown in errors and logs)"
    )
    parser.add_argument(
        "--scopes",
        default="read",
        metavar="SCOPES",
        help="comma-separated, of read < write < admin [default: read]",
    )
    parser.add_argument(
        "--tokens-file",
        required=True,
        metavar="FILE",
        help="the --auth-tokens-file to add the token's SHA-256 to, .toml or .json (required)",
    )
    parser.add_argument(
        "--expires-in",
        metavar="DURATION",
        help="lifetime: N days, hours or minutes, e.g. 90d, 12h, 30m [default: never expires]",
    )
    parser.add_argument(
        "--runtime-instance",
        dest="runtime_instances",
        action="append",
        default=[],
        metavar="INSTANCE",
        help="scope the token's lease calls to this runtime instance, repeatable "
        "[default: any instance]",
    )


_DURATION = re.compile(r"(\d+)([dhm])")
_MAX_LIFETIME_MINUTES = 100 * 366 * 1440


def parse_lifetime(text: str) -> timedelta:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidArgument("expires_in", f"expected e.g. 90d, 12h or 30m, got {text!r}")
    amount, unit = int(match.group(1)), match.group(2)
    minutes = amount * {"d": 1440, "h": 60, "m": 1}[unit]
    if minutes > _MAX_LIFETIME_MINUTES:
        raise InvalidArgument("expires_in", f"at most 100 years, got {text!r}")
    return timedelta(minutes=minutes)


def run_token_create(args: argparse.Namespace) -> int:
    expires = datetime.now(UTC) + parse_lifetime(args.expires_in) if args.expires_in else None
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    token = issue_token(
        args.tokens_file,
        args.name,
        scopes,
        expires_at=expires,
        runtime_instances=args.runtime_instances,
    )
    print(
        f"added {args.name!r} ({', '.join(scopes)}) to {args.tokens_file}; "
        "the token is shown only now:",
        file=sys.stderr,
    )
    print(token)
    return 0
