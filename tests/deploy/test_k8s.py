"""deploy/k8s: a Deployment and Service per catalog service, gRPC health probes,
etcd endpoints from the ConfigMap; checked by parsing."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from deploy_support import ENV_NAMES, ROOT, hostport, settings_for

from mobkit.etcd.process import DEFAULT_QUOTA_BYTES
from mobkit.roster.document import parse_roster_toml
from mobkit.server.app import LIVENESS
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


def _mobkit_services(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in _by_kind(docs, "Service").items() if k != "etcd"}


def test_a_deployment_and_service_per_catalog_service(docs: list[dict[str, Any]]) -> None:
    deployments, services = _by_kind(docs, "Deployment"), _mobkit_services(docs)
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
        # Readiness follows the backends (NOT_SERVING while etcd is full); liveness asks
        # the name that stays SERVING, so a full etcd does not restart every pod.
        assert container["readinessProbe"]["grpc"].get("service", "") == ""
        assert container["livenessProbe"]["grpc"]["service"] == LIVENESS, key
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


def test_etcd_runs_with_compaction_and_a_quota_at_the_configured_endpoints(
    docs: list[dict[str, Any]],
) -> None:
    (etcd,) = [d for d in docs if d["kind"] == "StatefulSet"]
    service = _by_kind(docs, "Service")[etcd["spec"]["serviceName"]]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == etcd["spec"]["selector"]["matchLabels"]
    (container,) = etcd["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("quay.io/coreos/etcd:v3.5.")
    flags = dict(a.split("=", 1) for a in container["command"][1:])
    assert int(flags["--quota-backend-bytes"]) == DEFAULT_QUOTA_BYTES
    assert flags["--auto-compaction-mode"] == "periodic"
    assert flags["--auto-compaction-retention"] == "1h"
    name, replicas = etcd["metadata"]["name"], etcd["spec"]["replicas"]
    members = dict(m.split("=", 1) for m in flags["--initial-cluster"].split(","))
    peers = {f"{name}-{i}": f"http://{name}-{i}.{service['metadata']['name']}:2380" for i in range(replicas)}
    assert members == peers
    config = _by_kind(docs, "ConfigMap")["mobkit-config"]["data"]
    settings = settings_for(["serve", "lease"], {"MOBKIT_ETCD_ENDPOINTS": config["MOBKIT_ETCD_ENDPOINTS"]})
    assert settings.etcd_endpoints == [u.replace(":2380", ":2379") for u in peers.values()]
