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


def problems(tmp_path: Path, text: str, *extra: str) -> list[str]:
    """Every line `roster validate` prints for an invalid roster: one per problem."""
    path = tmp_path / "roster.toml"
    path.write_text(text)
    run = mobkit("roster", "validate", str(path), *extra)
    assert run.returncode == 3, run.stdout + run.stderr
    assert run.stdout == ""
    lines = run.stderr.splitlines()
    for line in lines:
        assert line.startswith("mobkit roster validate: ROSTER_INVALID: roster invalid"), line
    return lines


def invalid(tmp_path: Path, text: str, *extra: str) -> str:
    """The one line of a roster with exactly one problem."""
    [line] = problems(tmp_path, text, *extra)
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

    typo = problems(tmp_path, GOOD.replace('profile = "worker"\n', 'profil = "worker"\n', 1))
    assert [line.split("roster invalid ")[1] for line in typo] == [
        "[agents[0]] [profil]: unknown field 'profil'",
        "[agents[0]] [profile]: is required",
    ]

    broken = invalid(tmp_path, "[[agents]\n")
    assert "malformed TOML" in broken


def test_roster_validate_uses_profiles_from_the_config(tmp_path: Path) -> None:
    roster = GOOD.replace('[profiles]\nworker = "notebook"\n', "")
    assert len(problems(tmp_path, roster)) == 2  # no profile "worker" without the config
    config = tmp_path / "mobkit.toml"
    config.write_text('[roster]\nprofiles = { worker = "echo" }\n')
    run = mobkit("roster", "validate", str(tmp_path / "roster.toml"), "--config", str(config))
    assert run.returncode == 0, run.stderr


def test_roster_validate_refuses_profiles_naming_no_agent_kind_of_the_runtime(
    tmp_path: Path,
) -> None:
    typo = GOOD.replace('worker = "notebook"', 'worker = "notebook"\nhelper = "notebok"')
    line = invalid(tmp_path, typo)
    assert line == (
        "mobkit roster validate: ROSTER_INVALID: roster invalid [profiles.helper]: "
        "unknown agent kind 'notebok' (the runtime offers: echo, llm, notebook)"
    )
    # The kinds come from the config as the service reads it: [profiles] aliases of the
    # reference runtime, or [roster] agent_kinds for another runtime.
    config = tmp_path / "mobkit.toml"
    config.write_text('[profiles]\nnotebok = "notebook"\n')
    run = mobkit("roster", "validate", str(tmp_path / "roster.toml"), "--config", str(config))
    assert run.returncode == 0, run.stderr
    config.write_text('[roster]\nagent_kinds = ["llm"]\n')
    lines = problems(tmp_path, typo, "--config", str(config))
    fields = [line.split("roster invalid [")[1].split("]")[0] for line in lines]
    assert fields == ["profiles.worker", "profiles.helper"]
    assert all("(the runtime offers: llm)" in line for line in lines)


def test_roster_validate_reports_every_problem_of_the_file(tmp_path: Path) -> None:
    text = """
[profiles]
worker = "notebook"
helper = "notebok"

[[agents]]
identity = "w1"
profile = "worker"
labesl = { a = "b" }

[[agents]]
identity = "w1"
profile = "boss"

[[agents]]
identity = "w 3"
profile = "worker"
addressability = "public"
"""
    lines = problems(tmp_path, text)
    assert [line.split("roster invalid ")[1] for line in lines] == [
        "[profiles.helper]: unknown agent kind 'notebok' (the runtime offers: echo, llm, notebook)",
        "[agents[0]] [labesl]: unknown field 'labesl'",
        "[agents[1]] [identity]: duplicate identity 'w1' (first used by agents[0])",
        "[agents[1]] [profile]: unknown profile 'boss' (known: helper, worker)",
        "[agents[2]] [identity]: invalid identity 'w 3': must not contain whitespace",
        "[agents[2]] [addressability]: must be one of addressable, internal_only",
    ]
    path = tmp_path / "roster.toml"
    scripted = mobkit("roster", "validate", str(path), "--json")
    assert scripted.returncode == 3 and scripted.stderr == ""
    report = json.loads(scripted.stdout)
    assert report["file"] == str(path) and report["valid"] is False
    assert [(p["entry"], p["field"]) for p in report["problems"]] == [
        (None, "profiles.helper"),
        ("agents[0]", "labesl"),
        ("agents[1]", "identity"),
        ("agents[1]", "profile"),
        ("agents[2]", "identity"),
        ("agents[2]", "addressability"),
    ]
    assert report["problems"][3]["message"] == "unknown profile 'boss' (known: helper, worker)"


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
