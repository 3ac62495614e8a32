"""Commands that need no server: ``roster validate``, ``dev-ca``, ``token create``; and
``serve`` failing as it always did."""

from __future__ import annotations

import json
from pathlib import Path

from cli_support import mobkit

from mobkit.security.auth import TokenRegistry

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "roster.toml"

GOOD = """
[profiles]
worker = "notebook"

[[agents]]
identity = "w1"
profile = "worker"

[[agents]]
identity = "w2"
profile = "worker"
"""


def test_roster_validate_accepts_a_valid_roster(tmp_path: Path) -> None:
    run = mobkit("roster", "validate", str(EXAMPLE))
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == (
        f"{EXAMPLE}: valid, 4 agents (coordinator, worker-1, worker-2, worker-3)"
    )

    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    scripted = mobkit("roster", "validate", str(path), "--json")
    assert scripted.returncode == 0, scripted.stderr
    assert json.loads(scripted.stdout) == {
        "file": str(path),
        "valid": True,
        "agents": 2,
        "identities": ["w1", "w2"],
    }


def invalid(tmp_path: Path, text: str, *extra: str) -> str:
    path = tmp_path / "roster.toml"
    path.write_text(text)
    run = mobkit("roster", "validate", str(path), *extra)
    assert run.returncode == 3, run.stdout + run.stderr
    assert run.stdout == ""
    [line] = run.stderr.splitlines()
    assert line.startswith("mobkit roster validate: ROSTER_INVALID: roster invalid")
    return line


def test_roster_validate_names_the_entry_and_field(tmp_path: Path) -> None:
    unknown = invalid(
        tmp_path, GOOD.replace('profile = "worker"\n\n[[agents]]', 'profile = "boss"\n\n[[agents]]')
    )
    assert "[agents[0]] [profile]" in unknown and "unknown profile 'boss'" in unknown

    duplicate = invalid(tmp_path, GOOD.replace('"w2"', '"w1"'))
    assert "[agents[1]] [identity]" in duplicate and "duplicate identity 'w1'" in duplicate

    bad_identity = invalid(tmp_path, GOOD.replace('"w2"', '"w 2"'))
    assert "[agents[1]] [identity]" in bad_identity

    typo = invalid(tmp_path, GOOD.replace('profile = "worker"\n', 'profil = "worker"\n', 1))
    assert "[agents[0]]" in typo

    broken = invalid(tmp_path, "[[agents]\n")
    assert "malformed TOML" in broken


def test_roster_validate_uses_profiles_from_the_config(tmp_path: Path) -> None:
    roster = GOOD.replace('[profiles]\nworker = "notebook"\n', "")
    invalid(tmp_path, roster)  # no profile "worker" without the config
    config = tmp_path / "mobkit.toml"
    config.write_text('[roster]\nprofiles = { worker = "echo" }\n')
    run = mobkit("roster", "validate", str(tmp_path / "roster.toml"), "--config", str(config))
    assert run.returncode == 0, run.stderr


def test_roster_validate_of_a_missing_file(tmp_path: Path) -> None:
    run = mobkit("roster", "validate", str(tmp_path / "nope.toml"))
    assert run.returncode == 3
    [line] = run.stderr.splitlines()
    assert line.startswith("mobkit roster validate: INVALID_ARGUMENT: invalid file: cannot read")


def test_dev_ca_and_token_create_are_registered(tmp_path: Path) -> None:
    ca = mobkit("dev-ca", str(tmp_path / "ca"))
    assert ca.returncode == 0, ca.stderr
    assert (tmp_path / "ca" / "ca.pem").exists()

    tokens = tmp_path / "tokens.toml"
    made = mobkit("token", "create", "ci", "--scopes", "read", "--tokens-file", str(tokens))
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert (
        TokenRegistry.load(tokens).authenticate([("authorization", f"Bearer {token}")]).name == "ci"
    )


def test_serve_fails_as_before() -> None:
    run = mobkit("serve", "nosuch", "--listen", "127.0.0.1:0")
    assert run.returncode == 2
    assert run.stderr.startswith("mobkit serve: unknown service 'nosuch'")
