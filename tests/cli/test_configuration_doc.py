"""docs/configuration.md is the reference of every flag, variable and config section:
it documents exactly what the real CLI parser, ``Settings`` and the providers accept."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cli_support import cli_commands, option_actions

from mobkit.continuity import service as continuity
from mobkit.customizer import rules as customizer
from mobkit.modules import config as modules
from mobkit.roster import service as roster
from mobkit.runtime.agents.llm import settings as llm
from mobkit.server import options
from mobkit.server.config import SECTIONS, Settings, default_of
from mobkit.topology import policy as topology

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"
NOT_OPTIONS = {"sections", "config_path"}
SETTINGS = {f.name for f in dataclasses.fields(Settings)} - NOT_OPTIONS
FLAG_OF = {options.flag(name): name for name in SETTINGS}

# The key tables of the config file's sections, as the code that reads them knows them.
SECTION_KEYS: dict[str, frozenset[str]] = {
    "[roster]": roster.SECTION_KEYS,
    "[topology]": topology.SECTION_KEYS,
    "[customizer]": customizer.SECTION_KEYS,
    "[[customizer.rules]]": customizer.RULE_KEYS,
    "customizer.rules.match": customizer.MATCH_KEYS,
    "customizer.rules.external_tools": customizer.TOOL_KEYS,
    "[continuity]": continuity.SECTION_KEYS,
    "[modules]": modules.SECTION_KEYS,
    "[[modules.module]]": modules.MODULE_KEYS,
    "[llm]": llm.SECTION_KEYS,
}
FREE_FORM = {"[profiles]"}  # profile = agent kind: any key


@dataclass
class Table:
    heading: str
    commands: set[str]
    columns: list[str]
    rows: list[dict[str, str]] = field(default_factory=list)

    def cells(self, column: str) -> list[str]:
        return [row[column] for row in self.rows]


def _commands(heading: str) -> set[str]:
    """`mobkit etcd compact` -> "etcd compact"; `mobkit send IDENTITY TEXT` -> "send"."""
    spans = re.findall(r"`mobkit ([^`-][^`]*)`", heading)  # not `mobkit --version`
    return {" ".join(word for word in span.split() if word.islower()) for span in spans}


def _tables() -> Iterator[Table]:
    headings: list[tuple[int, str]] = []
    lines = DOC.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            headings = [(lv, h) for lv, h in headings if lv < level] + [(level, line)]
        if line.startswith("|"):
            columns = [c.strip() for c in line.strip("|").split("|")]
            commands = next((c for _, h in reversed(headings) if (c := _commands(h))), set())
            table = Table(headings[-1][1], commands, columns)
            i += 2  # the header's separator row
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip("|").split("|")]
                table.rows.append(dict(zip(columns, cells, strict=True)))
                i += 1
            yield table
            continue
        i += 1


def _flags(cell: str) -> set[str]:
    return set(re.findall(r"`(-[-a-z]+)`", cell))


def _plain(cell: str) -> str:
    return cell.replace("`", "")


@pytest.fixture(scope="module")
def tables() -> list[Table]:
    return list(_tables())


def test_every_setting_has_its_option_doc() -> None:
    assert set(options.OPTIONS) == SETTINGS
    assert set(options.GROUPS) == {doc.group for doc in options.OPTIONS.values()}


def test_every_command_documents_exactly_its_flags(tables: list[Table]) -> None:
    documented: dict[str, set[str]] = {}
    for table in tables:
        if "flag" in table.columns:
            for command in table.commands:
                documented.setdefault(command, set()).update(*map(_flags, table.cells("flag")))
    connection = next(t for t in tables if t.heading.startswith("### Connection options"))
    assert "`mobkit --version`" in DOC.read_text()
    documented[""] = set().union(*map(_flags, connection.cells("flag"))) | {"--version"}
    for path, parser in cli_commands().items():  # groups (`mobkit etcd`) have no flags
        real = {s for a in option_actions(parser) for s in a.option_strings}
        assert documented.get(path, set()) == real, f"mobkit {path}: documented vs real flags"


def test_settings_flags_name_their_variable_and_default(tables: list[Table]) -> None:
    """Where a command takes a setting (serve, up, etcd ...), its row names the setting's
    variable; the serve/up rows also give the default --help shows."""
    commands = cli_commands()
    with_defaults = set()
    for table in tables:
        for row in table.rows if "flag" in table.columns else ():
            for command in table.commands:
                takes = {
                    s: a.dest for a in option_actions(commands[command]) for s in a.option_strings
                }
                for flag in _flags(row["flag"]):
                    name = takes[flag]
                    if name not in SETTINGS:
                        continue
                    assert _plain(row["environment"]) == options.env_name(name), (command, flag)
                    if command in ("serve", "up"):
                        default = _plain(options.default_text(name, default_of(name)))
                        assert _plain(row["default"]) == default, (command, flag)
                        with_defaults.add(name)
    assert with_defaults == SETTINGS


def test_every_environment_variable_is_documented() -> None:
    text = DOC.read_text()
    in_doc = set(re.findall(r"\bMOBKIT_[A-Z][A-Z_]*\b", text))
    sources = [
        *(ROOT / "services" / "mobkit").rglob("*.py"),
        *(ROOT / "clients" / "python").rglob("*.py"),
    ]
    read = {
        name
        for path in sources
        if "gen" not in path.relative_to(ROOT).parts
        for name in re.findall(r"\bMOBKIT_[A-Z][A-Z_]*\b", path.read_text())
    }
    derived = {options.env_name(name) for name in SETTINGS} | {"MOBKIT_CONFIG"}
    assert read | derived <= in_doc, sorted((read | derived) - in_doc)
    assert in_doc <= read | derived, sorted(in_doc - read - derived)


def test_every_config_section_and_key_is_documented(tables: list[Table]) -> None:
    text = DOC.read_text()
    headed = set(re.findall(r"^###+ `(\[[a-z_]+\])`", text, flags=re.M))
    assert headed == {f"[{s}]" for s in SECTIONS}
    keyed = {}
    for table in tables:
        code = re.findall(r"`([^`]+)`", table.heading)
        if "key" in table.columns and code:
            keyed[code[0]] = {_plain(k) for k in table.cells("key")}
    assert keyed == {name: set(keys) for name, keys in SECTION_KEYS.items()}
    assert FREE_FORM | set(SECTION_KEYS) >= headed
