"""deploy/k8s: a Deployment and Service per catalog service, gRPC health probes,
etcd endpoints from the ConfigMap; checked by parsing."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from deploy_support import ENV_NAMES, ROOT, hostport, settings_for

from mobkit.roster.document import parse_roster_toml
from mobkit.server.catalog import CATALOG

K8S = ROOT / "deploy" / "k8s"


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    out: list[dict[str, Any]] = []
    for name in listed:
        out += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return out


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _container_env(container: dict[str, Any], config: dict[str, str]) -> dict[str, str]:
    env = dict(config) if container.get("envFrom") else {}
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "from-field")
    return {k: v for k, v in env.items() if k.startswith("MOBKIT_")}


def test_a_deployment_and_service_per_catalog_service(docs: list[dict[str, Any]]) -> None:
    deployments, services = _by_kind(docs, "Deployment"), _by_kind(docs, "Service")
    assert set(deployments) == {f"mobkit-{k}" for k in CATALOG}
    assert set(services) == set(deployments)
    for name, deployment in deployments.items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert deployment["spec"]["template"]["metadata"]["labels"] == selector
        assert services[name]["spec"]["selector"] == selector


def test_containers_use_real_options_probes_and_ports(docs: list[dict[str, Any]]) -> None:
    config = _by_kind(docs, "ConfigMap")["mobkit-config"]["data"]
    assert set(config) <= ENV_NAMES
    services = _by_kind(docs, "Service")
    for key in CATALOG:
        pod = _by_kind(docs, "Deployment")[f"mobkit-{key}"]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": "mobkit-config"}}]
        env = _container_env(container, config)
        assert set(env) <= ENV_NAMES, key
        settings = settings_for(container["args"], env)
        assert container["args"][:2] == ["serve", key]
        assert len(settings.etcd_endpoints) == 3
        port = hostport(settings.listen)[1]
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == port, (key, probe)
        grpc_port = next(p for p in container["ports"] if p["name"] == "grpc")
        assert grpc_port["containerPort"] == port
        service_port = next(p for p in services[f"mobkit-{key}"]["spec"]["ports"] if p["name"] == "grpc")
        assert service_port["port"] == port and service_port["targetPort"] == "grpc"
        metrics = next(p for p in container["ports"] if p["name"] == "metrics")
        assert hostport(settings.metrics_listen or "")[1] == metrics["containerPort"]


def test_orchestrator_points_at_each_provider_service(docs: list[dict[str, Any]]) -> None:
    deployments, services = _by_kind(docs, "Deployment"), _by_kind(docs, "Service")
    config = _by_kind(docs, "ConfigMap")["mobkit-config"]["data"]
    (container,) = deployments["mobkit-orchestrator"]["spec"]["template"]["spec"]["containers"]
    settings = settings_for(container["args"], _container_env(container, config))
    for key in CATALOG:
        if key == "orchestrator":
            continue
        host, port = hostport(settings.provider_addr(key) or "")
        assert host in services, f"--{key}-addr names no Service"
        assert port in [p["port"] for p in services[host]["spec"]["ports"]]
        assert services[host]["spec"]["selector"]["app.kubernetes.io/component"] == key


def test_roster_configmap_matches_the_compose_roster(docs: list[dict[str, Any]]) -> None:
    roster = _by_kind(docs, "ConfigMap")["mobkit-roster"]["data"]["roster.toml"]
    assert parse_roster_toml(roster) == parse_roster_toml((ROOT / "deploy" / "roster.toml").read_text())
