"""docker-compose.yml and the Dockerfile, checked by parsing (no Docker engine here):
against the Compose Specification's JSON Schema (Compose v2) and docker-compose 1.29's
own (Debian's package), and by `docker-compose config` where that is installed."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import jsonschema
import pytest
import yaml
from deploy_support import (
    CONFIG,
    ENV_NAMES,
    MOUNTED_CONFIG,
    ROOT,
    hostport,
    parse_mobkit,
    settings_for,
)

from mobkit.client.options import DEFAULT_ADDRESS
from mobkit.etcd.process import DEFAULT_QUOTA_BYTES
from mobkit.modules.config import parse_modules
from mobkit.roster.document import parse_roster_toml
from mobkit.server.catalog import CATALOG

HEALTHCHECK = ["CMD", "python", "-m", "mobkit.server.healthcheck"]
SCHEMAS = ROOT / "tests" / "deploy" / "schemas"  # origins: tests/deploy/schemas/README.md
METRICS_PORT = 9100


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


CONSOLE = "console"  # `mobkit serve console`: HTTP, not a catalog service


def _mobkit_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The catalog's gRPC services (not etcd, not the console)."""
    return {
        k: v for k, v in compose["services"].items() if not k.startswith("etcd") and k != CONSOLE
    }


def test_every_catalog_service_has_a_container(compose: dict[str, Any]) -> None:
    services = _mobkit_services(compose)
    assert set(services) == set(CATALOG)
    for key, service in services.items():
        args = parse_mobkit(service["command"])
        assert (args.command, args.service) == ("serve", key)


def test_every_container_is_health_checked_and_restarted(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service.get("restart") in ("unless-stopped", "always", "on-failure"), name
        assert service["healthcheck"]["test"][0] == "CMD", name
    for key, service in _mobkit_services(compose).items():
        test = service["healthcheck"]["test"]
        assert test[:4] == HEALTHCHECK, key
        listen = settings_for(service["command"], _env(service)).listen
        assert hostport(test[4])[1] == hostport(listen)[1], f"{key} checks another port"


def test_environment_and_commands_are_real_settings(compose: dict[str, Any]) -> None:
    for key, service in _mobkit_services(compose).items():
        env = _env(service)
        assert set(env) <= ENV_NAMES, key
        settings = settings_for(service["command"], env)  # validates values too
        assert len(settings.etcd_endpoints) == 3, key
        assert settings.metrics_listen, key
    assert (
        settings_for(
            compose["services"]["continuity"]["command"], _env(compose["services"]["continuity"])
        ).continuity_backend
        == "etcd"
    )


def test_orchestrator_reaches_each_provider_where_it_listens(compose: dict[str, Any]) -> None:
    services = _mobkit_services(compose)
    orch = settings_for(services["orchestrator"]["command"], _env(services["orchestrator"]))
    for key in CATALOG:
        if key == "orchestrator":
            continue
        host, port = hostport(orch.provider_addr(key) or "")
        assert host == key, f"--{key}-addr names {host}"
        listen = settings_for(services[key]["command"], _env(services[key])).listen
        assert hostport(listen) == ("0.0.0.0", port)
        assert services["orchestrator"]["depends_on"][key]["condition"] == "service_healthy"


def test_three_member_etcd_cluster(compose: dict[str, Any]) -> None:
    etcd = {k: v for k, v in compose["services"].items() if k.startswith("etcd")}
    assert len(etcd) == 3
    clusters = set()
    for name, member in etcd.items():
        assert member["image"].startswith("quay.io/coreos/etcd:v3.5.")
        flags = dict(a.split("=", 1) for a in member["command"][1:])
        assert flags["--name"] == name
        assert flags["--initial-advertise-peer-urls"] == f"http://{name}:2380"
        assert flags["--initial-cluster-state"] == "new"
        # Bounded storage: etcd compacts by itself and refuses writes at a known size.
        assert int(flags["--quota-backend-bytes"]) == DEFAULT_QUOTA_BYTES
        assert flags["--auto-compaction-mode"] == "periodic"
        assert flags["--auto-compaction-retention"] == "1h"
        clusters.add(flags["--initial-cluster"])
    assert len(clusters) == 1
    members = dict(m.split("=", 1) for m in clusters.pop().split(","))
    assert members == {name: f"http://{name}:2380" for name in etcd}
    endpoints = settings_for(["serve", "lease"], _env(compose["services"]["lease"])).etcd_endpoints
    assert endpoints == [f"http://{name}:2379" for name in sorted(etcd)]


def test_the_customizer_and_the_orchestrator_read_the_mounted_config(
    compose: dict[str, Any],
) -> None:
    """deploy/mobkit.toml: the example module runs beside the orchestrator (the runtime
    container's agents reach it over RunTurnStream) and the customizer grants it."""
    for key in ("customizer", "orchestrator"):
        service = compose["services"][key]
        assert _env(service)["MOBKIT_CONFIG"] == MOUNTED_CONFIG, key
        source, target, mode = service["volumes"][0].split(":")
        assert (ROOT / source, target, mode) == (CONFIG, MOUNTED_CONFIG, "ro"), key
    orchestrator = compose["services"]["orchestrator"]
    settings = settings_for(orchestrator["command"], _env(orchestrator))
    modules = parse_modules(settings.sections["modules"])
    assert [m.id for m in modules.modules] == ["clock"] and modules.required == {"clock"}
    rules = settings.sections["customizer"]["rules"]
    assert [t["name"] for r in rules for t in r["external_tools"]] == ["clock.now"]
    runtime = compose["services"]["runtime"]
    assert "MOBKIT_CONFIG" not in _env(runtime) and "volumes" not in runtime


def test_mounted_roster_is_valid(compose: dict[str, Any]) -> None:
    roster = compose["services"]["roster"]
    source, target, _ = roster["volumes"][0].split(":")
    assert target == _env(roster)["MOBKIT_ROSTER"]
    document = parse_roster_toml((ROOT / source).read_text())
    assert document.specs


def test_dockerfile_is_slim_non_root_and_runs_mobkit() -> None:
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines()]
    froms = [ln.split()[1] for ln in lines if ln.startswith("FROM ")]
    assert froms and all(f == "python:3.11-slim" for f in froms)
    final = lines[max(i for i, ln in enumerate(lines) if ln.startswith("FROM "))]
    tail = lines[lines.index(final) :]
    users = [ln.split()[1] for ln in tail if ln.startswith("USER ")]
    assert users and not users[-1].startswith(("root", "0"))
    assert 'ENTRYPOINT ["mobkit"]' in tail
    assert any("pip install" in ln for ln in tail)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


@pytest.mark.parametrize(
    ("schema", "validator"),
    [
        ("compose-spec.json", jsonschema.Draft7Validator),  # Compose v2
        ("docker-compose-1.29.json", jsonschema.Draft4Validator),  # as 1.29 validates
    ],
)
def test_both_compose_versions_accept_the_file(
    compose: dict[str, Any], schema: str, validator: type[jsonschema.protocols.Validator]
) -> None:
    check = validator(json.loads((SCHEMAS / schema).read_text()))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in check.iter_errors(compose)]
    assert errors == []
    # The key 1.29 refused: its schema must still say so, or this test proves nothing.
    refused = list(check.iter_errors({**compose, "name": "mobkit"}))
    assert refused if "1.29" in schema else not refused


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_config_accepts_the_file() -> None:
    run = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr


def _published(service: dict[str, Any]) -> dict[int, tuple[str, int]]:
    """container port -> (host address, host port) of short-syntax `ports`."""
    out = {}
    for spec in service.get("ports", []):
        address, host, container = str(spec).split(":")
        out[int(container)] = (address, int(host))
    return out


def test_the_cli_default_reaches_the_orchestrator_and_metrics_are_published(
    compose: dict[str, Any],
) -> None:
    services = _mobkit_services(compose)
    orchestrator = services["orchestrator"]
    listen = settings_for(orchestrator["command"], _env(orchestrator)).listen
    _, port = hostport(DEFAULT_ADDRESS)
    assert hostport(listen)[1] == port
    assert _published(orchestrator)[port] == ("127.0.0.1", port)
    metrics_hosts = set()
    for key, service in services.items():
        settings = settings_for(service["command"], _env(service))
        assert hostport(settings.metrics_listen or "")[1] == METRICS_PORT, key
        address, host_port = _published(service)[METRICS_PORT]
        assert address == "127.0.0.1", key  # no auth by default: loopback only
        metrics_hosts.add(host_port)
    assert len(metrics_hosts) == len(services)


def test_the_console_reads_the_orchestrator_and_is_published_on_loopback(
    compose: dict[str, Any],
) -> None:
    console = compose["services"][CONSOLE]
    args = parse_mobkit(console["command"])
    assert (args.command, args.service) == ("serve", CONSOLE)
    settings = settings_for(console["command"], _env(console))
    host, port = hostport(settings.orchestrator_addr or "")
    orchestrator = compose["services"]["orchestrator"]
    assert host == "orchestrator"
    assert port == hostport(settings_for(orchestrator["command"], _env(orchestrator)).listen)[1]
    assert console["depends_on"]["orchestrator"]["condition"] == "service_healthy"
    listen = hostport(settings.listen)
    assert listen[0] == "0.0.0.0"
    assert _published(console)[listen[1]] == ("127.0.0.1", listen[1])  # loopback only
    assert console["healthcheck"]["test"] == [
        "CMD",
        "python",
        "-m",
        "mobkit.console.healthcheck",
        f"127.0.0.1:{listen[1]}",
    ]
    assert console["restart"] == "unless-stopped"
