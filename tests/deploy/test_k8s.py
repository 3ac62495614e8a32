"""deploy/k8s: a Deployment and Service per catalog service, gRPC health probes,
etcd endpoints from the ConfigMap, a 3-member etcd, disruption budgets, network
policies, spread and token-less service accounts; checked by parsing, and by
`kustomize build` where kustomize (or kubectl) is installed."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml
from deploy_support import CONFIG, ENV_NAMES, MOUNTED_CONFIG, ROOT, hostport, settings_for

from mobkit.client.options import DEFAULT_ADDRESS
from mobkit.etcd.process import DEFAULT_QUOTA_BYTES
from mobkit.roster.document import parse_roster_toml
from mobkit.server.app import LIVENESS
from mobkit.server.catalog import CATALOG

K8S = ROOT / "deploy" / "k8s"


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
    )
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


CONSOLE = "mobkit-console"  # `mobkit serve console`: HTTP, not a catalog service


def test_a_deployment_and_service_per_catalog_service(docs: list[dict[str, Any]]) -> None:
    deployments, services = _by_kind(docs, "Deployment"), _mobkit_services(docs)
    assert set(deployments) == {f"mobkit-{k}" for k in CATALOG} | {CONSOLE}
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
        service_port = next(
            p for p in services[f"mobkit-{key}"]["spec"]["ports"] if p["name"] == "grpc"
        )
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
    assert parse_roster_toml(roster) == parse_roster_toml(
        (ROOT / "deploy" / "roster.toml").read_text()
    )


def test_the_customizer_and_the_orchestrator_mount_the_shared_config(
    docs: list[dict[str, Any]],
) -> None:
    settings = _by_kind(docs, "ConfigMap")["mobkit-settings"]["data"]["mobkit.toml"]
    assert settings == CONFIG.read_text()  # the file compose mounts, word for word
    config = _by_kind(docs, "ConfigMap")["mobkit-config"]["data"]
    for key in CATALOG:
        pod = _by_kind(docs, "Deployment")[f"mobkit-{key}"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = _container_env(container, config)
        if key not in ("customizer", "orchestrator"):
            assert "MOBKIT_CONFIG" not in env, key  # the runtime needs none of it
            continue
        assert env["MOBKIT_CONFIG"] == MOUNTED_CONFIG, key
        volumes = {v["name"]: v for v in pod["volumes"]}
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/etc/mobkit"]
        assert mount["readOnly"] is True
        assert volumes[mount["name"]]["configMap"]["name"] == "mobkit-settings", key
        assert settings_for(container["args"], env).sections.get("modules") or key != "orchestrator"


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
    peers = {
        f"{name}-{i}": f"http://{name}-{i}.{service['metadata']['name']}:2380"
        for i in range(replicas)
    }
    assert members == peers
    config = _by_kind(docs, "ConfigMap")["mobkit-config"]["data"]
    settings = settings_for(
        ["serve", "lease"], {"MOBKIT_ETCD_ENDPOINTS": config["MOBKIT_ETCD_ENDPOINTS"]}
    )
    assert settings.etcd_endpoints == [u.replace(":2380", ":2379") for u in peers.values()]


def _workloads(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Deployments and the etcd StatefulSet, by name."""
    return {**_by_kind(docs, "Deployment"), **_by_kind(docs, "StatefulSet")}


def _pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # all these manifests use
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _kustomize() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.skipif(_kustomize() is None, reason="neither kustomize nor kubectl installed")
def test_kustomize_builds_every_listed_manifest(docs: list[dict[str, Any]]) -> None:
    command = _kustomize()
    assert command is not None
    run = subprocess.run(
        [*command, str(K8S)], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    built = [d for d in yaml.safe_load_all(run.stdout) if d]
    names = sorted((d["kind"], d["metadata"]["name"]) for d in built)
    assert names == sorted((d["kind"], d["metadata"]["name"]) for d in docs)


def test_the_orchestrator_listens_on_the_cli_default_port(docs: list[dict[str, Any]]) -> None:
    config = _by_kind(docs, "ConfigMap")["mobkit-config"]["data"]
    deployment = _by_kind(docs, "Deployment")["mobkit-orchestrator"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    listen = settings_for(container["args"], _container_env(container, config)).listen
    assert hostport(listen)[1] == hostport(DEFAULT_ADDRESS)[1]


def test_three_etcd_members_in_a_statefulset_behind_a_headless_service(
    docs: list[dict[str, Any]],
) -> None:
    (etcd,) = _by_kind(docs, "StatefulSet").values()
    assert etcd["spec"]["replicas"] == 3
    assert _by_kind(docs, "Service")[etcd["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"


def test_pods_run_as_service_accounts_without_a_token(docs: list[dict[str, Any]]) -> None:
    accounts = _by_kind(docs, "ServiceAccount")
    assert accounts and all(a["automountServiceAccountToken"] is False for a in accounts.values())
    for name, workload in _workloads(docs).items():
        pod = workload["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] in accounts, name
        assert pod["automountServiceAccountToken"] is False, name


def test_every_container_has_a_startup_probe_on_its_own_port(docs: list[dict[str, Any]]) -> None:
    for name, workload in _workloads(docs).items():
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        startup, liveness = container["startupProbe"], container["livenessProbe"]
        assert startup["failureThreshold"] * startup["periodSeconds"] >= 60, name
        # the startup probe asks what liveness asks, so liveness needs no initial delay
        assert "initialDelaySeconds" not in liveness, name
        if "grpc" in startup:
            assert startup["grpc"] == liveness["grpc"], name
        else:
            assert startup["httpGet"] == liveness["httpGet"], name


def test_replicas_spread_over_nodes(docs: list[dict[str, Any]]) -> None:
    for name, workload in _workloads(docs).items():
        (spread,) = workload["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert spread["topologyKey"] == "kubernetes.io/hostname", name
        assert spread["labelSelector"] == workload["spec"]["selector"], name


def test_a_disruption_budget_per_workload_and_etcd_keeps_quorum(
    docs: list[dict[str, Any]],
) -> None:
    budgets = list(_by_kind(docs, "PodDisruptionBudget").values())
    for name, workload in _workloads(docs).items():
        (budget,) = [b for b in budgets if _selects(b["spec"]["selector"], _pod_labels(workload))]
        assert budget["spec"]["selector"] == workload["spec"]["selector"], name
        # maxUnavailable, not minAvailable: a one-replica Deployment can still be drained
        assert budget["spec"] == {**budget["spec"], "maxUnavailable": 1}, name
        assert "minAvailable" not in budget["spec"], name
    (etcd,) = _by_kind(docs, "StatefulSet").values()
    replicas = etcd["spec"]["replicas"]
    assert replicas - 1 >= replicas // 2 + 1  # one member down leaves a quorum


def _ports_of(workload: dict[str, Any]) -> dict[str, int]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def _reachable(
    docs: list[dict[str, Any]], target: dict[str, Any], source: dict[str, str], port: str
) -> bool:
    """Whether the network policies let a pod labelled ``source`` reach ``port`` (a
    container port name) of ``target``'s pods."""
    labels, number = _pod_labels(target), _ports_of(target)[port]
    policies = [
        p
        for p in _by_kind(docs, "NetworkPolicy").values()
        if _selects(p["spec"]["podSelector"], labels)
    ]
    if not policies:
        return True  # a pod no policy selects is not isolated
    for policy in policies:
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports is not None and not any(p["port"] in (port, number) for p in ports):
                continue
            peers = rule.get("from")
            if peers is None or any(_selects(p["podSelector"], source) for p in peers):
                return True
    return False


def test_network_policies_admit_exactly_the_callers(docs: list[dict[str, Any]]) -> None:
    workloads = _workloads(docs)
    orchestrator = _pod_labels(workloads["mobkit-orchestrator"])
    runtime = _pod_labels(workloads["mobkit-runtime"])
    elsewhere = {"app.kubernetes.io/name": "prometheus"}
    (etcd,) = _by_kind(docs, "StatefulSet").values()
    for name, workload in workloads.items():
        assert any(
            _selects(p["spec"]["podSelector"], _pod_labels(workload))
            for p in _by_kind(docs, "NetworkPolicy").values()
        ), f"{name} is not isolated"
        if workload is etcd:
            continue
        if name == CONSOLE:  # browsers reach it; it calls only the orchestrator
            assert _reachable(docs, workload, elsewhere, "http")
            assert _reachable(docs, workloads["mobkit-orchestrator"], _pod_labels(workload), "grpc")
            continue
        assert _reachable(docs, workload, elsewhere, "metrics"), name
        assert _reachable(docs, etcd, _pod_labels(workload), "client"), name
        assert not _reachable(docs, etcd, _pod_labels(workload), "peer"), name
        if name == "mobkit-orchestrator":
            assert _reachable(docs, workload, elsewhere, "grpc")  # clients
        else:
            assert _reachable(docs, workload, orchestrator, "grpc"), name
            assert not _reachable(docs, workload, elsewhere, "grpc"), name
            if workload["spec"]["template"]["metadata"]["labels"] != runtime:
                assert not _reachable(docs, workload, runtime, "grpc"), name
    assert _reachable(docs, etcd, _pod_labels(etcd), "peer")
    assert not _reachable(docs, etcd, elsewhere, "client")


def test_the_console_reads_the_orchestrator_service_and_probes_its_own_port(
    docs: list[dict[str, Any]],
) -> None:
    config = _by_kind(docs, "ConfigMap")["mobkit-config"]["data"]
    pod = _by_kind(docs, "Deployment")[CONSOLE]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:2] == ["serve", "console"]
    settings = settings_for(container["args"], _container_env(container, config))
    orchestrator = _by_kind(docs, "Service")["mobkit-orchestrator"]
    host, port = hostport(settings.orchestrator_addr or "")
    assert host == orchestrator["metadata"]["name"]
    assert port in {p["port"] for p in orchestrator["spec"]["ports"] if p["name"] == "grpc"}
    listen = hostport(settings.listen)[1]
    assert _ports_of(_by_kind(docs, "Deployment")[CONSOLE]) == {"http": listen}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    (service,) = [s for s in _by_kind(docs, "Service").values() if s["metadata"]["name"] == CONSOLE]
    assert service["spec"]["ports"][0]["port"] == listen
