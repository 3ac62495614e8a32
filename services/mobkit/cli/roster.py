"""``mobkit roster validate FILE``: check a roster offline, as the roster service does.

The same parser and the same rules: the profiles of ``[roster]`` in ``--config``,
and the agent kinds the runtime offers with that configuration. Every problem of
the file is reported, one line each, not only the first.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from mobkit.cli import exit_codes
from mobkit.cli.output import print_json
from mobkit.core.errors import InvalidArgument, RosterInvalid
from mobkit.roster.document import RosterRules, parse_roster_text
from mobkit.roster.service import roster_rules
from mobkit.server.config import Settings


def validate(args: argparse.Namespace) -> int:
    """Exit 3 with every problem (entry and field) on stderr, or InvalidArgument raised."""
    path = Path(args.file)
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise InvalidArgument("file", f"cannot read {path}: {exc.strerror}") from None
    try:
        document = parse_roster_text(source, rules=_rules(args.config))
    except RosterInvalid as exc:
        return _invalid(args, path, exc)
    identities = [spec.identity for spec in document.specs]
    flows = [flow.flow_id for flow in document.flows]
    if args.json:
        result: dict[str, object] = {
            "file": str(path),
            "valid": True,
            "agents": len(identities),
            "identities": identities,
        }
        if flows:
            result["flows"] = flows
        print_json(result)
    else:
        names = ", ".join(identities[:8]) + (", ..." if len(identities) > 8 else "")
        line = f"{path}: valid, {len(identities)} agents" + (f" ({names})" if names else "")
        if flows:
            listed = ", ".join(flows[:8]) + (", ..." if len(flows) > 8 else "")
            line += f", {len(flows)} flow{'' if len(flows) == 1 else 's'} ({listed})"
        print(line)
    return exit_codes.OK


def _invalid(args: argparse.Namespace, path: Path, exc: RosterInvalid) -> int:
    if args.json:
        problems = [{"entry": p.entry, "field": p.field, "message": p.detail} for p in exc.problems]
        print_json({"file": str(path), "valid": False, "problems": problems})
    else:
        for problem in exc.problems:
            print(f"mobkit roster validate: {problem.reason}: {problem.message}", file=sys.stderr)
    return exit_codes.INVALID


def _rules(config: str | None) -> RosterRules:
    """The rules the roster service applies with this config file (none: the defaults)."""
    sections = {}
    if config:
        try:
            data = tomllib.loads(Path(config).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidArgument("config", f"{config}: {exc}") from None
        sections = {k: v for k, v in data.items() if isinstance(v, dict)}
    return roster_rules(Settings(sections=sections))


def add_roster(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    roster = sub.add_parser("roster", help="roster files")
    actions = roster.add_subparsers(dest="roster_command", required=True)
    p = actions.add_parser(
        "validate",
        help="check a roster file offline (exit 3 with every problem's entry and field)",
    )
    p.add_argument("file", metavar="FILE", help="roster file (TOML, or JSON as stored in etcd)")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="config file whose [roster] profiles and agent kinds the service also uses "
        "[default: none]",
    )
    p.add_argument("--json", action="store_true", help="JSON output for scripts [default: off]")
    p.set_defaults(kind="local", local_handler=validate, command_name="roster validate")
