"""``mobkit roster validate FILE``: check a roster offline, with the roster service's parser."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

from mobkit.cli import exit_codes
from mobkit.cli.output import print_json
from mobkit.core.errors import InvalidArgument, RosterInvalid
from mobkit.roster.document import parse_profiles, parse_roster_text


def validate(args: argparse.Namespace) -> int:
    """Raises RosterInvalid (with entry and field) or InvalidArgument; the caller prints."""
    path = Path(args.file)
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise InvalidArgument("file", f"cannot read {path}: {exc.strerror}") from None
    document = parse_roster_text(source, configured_profiles=_configured_profiles(args.config))
    identities = [spec.identity for spec in document.specs]
    if args.json:
        print_json(
            {"file": str(path), "valid": True, "agents": len(identities), "identities": identities}
        )
    else:
        names = ", ".join(identities[:8]) + (", ..." if len(identities) > 8 else "")
        print(f"{path}: valid, {len(identities)} agents" + (f" ({names})" if names else ""))
    return exit_codes.OK


def _configured_profiles(config: str | None) -> dict[str, str]:
    """Profiles from the ``[roster]`` section of a config file, as the roster service merges them."""
    if not config:
        return {}
    try:
        data = tomllib.loads(Path(config).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidArgument("config", f"{config}: {exc}") from None
    section = data.get("roster", {})
    try:
        return parse_profiles(section.get("profiles", {}) if isinstance(section, dict) else {})
    except RosterInvalid as exc:
        raise InvalidArgument("roster.profiles", exc.detail) from None


def add_roster(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    roster = sub.add_parser("roster", help="roster files")
    actions = roster.add_subparsers(dest="roster_command", required=True)
    p = actions.add_parser(
        "validate",
        help="check a roster file offline (exit 3 with the entry and field if invalid)",
    )
    p.add_argument("file", metavar="FILE", help="roster file (TOML, or JSON as stored in etcd)")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="config file whose [roster] profiles the service also uses [default: none]",
    )
    p.add_argument("--json", action="store_true", help="JSON output for scripts [default: off]")
    p.set_defaults(kind="local", local_handler=validate, command_name="roster validate")
