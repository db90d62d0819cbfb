"""deploy/k8s, checked without a cluster (issue 15, item 7).

The kustomization is built by ``kubectl kustomize`` when kubectl is installed (else its resources are read
directly), every object is validated against the Kubernetes JSON schemas shipped by ``kubernetes-validate``
(strict: unknown fields fail), and the parts that must agree with Herald are checked: probes on /ready and
/health, the drain fitting the grace period, selectors that select, the Redis URL naming the Redis Service.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes_validate import utils as k8s_schema

from api.settings import Settings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
# The oldest Kubernetes still in common support and the newest the schemas know.
VERSIONS = ("1.29.0", k8s_schema.latest_version())


def build() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        out = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in build()}


def test_the_kustomization_builds_every_file_it_lists(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert set(objects) == {
        ("ConfigMap", "herald-config"),
        ("Deployment", "herald"),
        ("Service", "herald"),
        ("PodDisruptionBudget", "herald"),
        ("HorizontalPodAutoscaler", "herald"),
        ("Service", "redis"),
        ("StatefulSet", "redis"),
    }


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_schema(
    objects: dict[tuple[str, str], dict[str, Any]], version: str
) -> None:
    for key, doc in objects.items():
        try:
            k8s_schema.validate(doc, version, strict=True)
        except k8s_schema.ValidationError as exc:
            pytest.fail(f"{key} is not a valid Kubernetes {version} object: {exc.message} at {list(exc.absolute_path)}")


def container(objects: dict[tuple[str, str], dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (only,) = objects[kind, name]["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = only
    return result


def config(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = objects["ConfigMap", "herald-config"]["data"]
    return data


def test_the_config_sets_only_real_settings_to_valid_values(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    data = config(objects)
    fields = {f"HERALD_{name.upper()}": name for name in Settings.model_fields}
    assert set(data) <= set(fields), set(data) - set(fields)
    Settings(**{fields[key]: value for key, value in data.items()})  # raises on an invalid value


def test_readiness_is_ready_and_liveness_is_health_on_the_served_port(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    herald = container(objects, "Deployment", "herald")
    (port,) = herald["ports"]
    assert port["containerPort"] == 8000 and "--port" in herald["args"]
    assert herald["args"][herald["args"].index("--port") + 1] == "8000"
    assert herald["args"][herald["args"].index("--host") + 1] == "0.0.0.0"
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health"), ("startupProbe", "/health")):
        assert herald[probe]["httpGet"]["path"] == path
        assert herald[probe]["httpGet"]["port"] in (port["name"], port["containerPort"])


def test_the_grace_period_covers_prestop_and_herald_own_drain(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    pod = objects["Deployment", "herald"]["spec"]["template"]["spec"]
    command = container(objects, "Deployment", "herald")["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    assert pre_stop > 0  # endpoints are updated while it sleeps: no new connection after SIGTERM
    grace = float(config(objects).get("HERALD_SHUTDOWN_GRACE_S", Settings.model_fields["shutdown_grace_s"].default))
    # SIGKILL only after Herald has had its whole drain: it exits on its own within `grace`.
    assert pod["terminationGracePeriodSeconds"] > pre_stop + grace


def test_replica_ids_and_secret_come_from_the_pod(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    env = {item["name"]: item for item in container(objects, "Deployment", "herald")["env"]}
    assert env["HERALD_REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["HERALD_JWT_SECRET"]["valueFrom"]["secretKeyRef"]["name"]
    env_from = container(objects, "Deployment", "herald")["envFrom"]
    assert {"configMapRef": {"name": "herald-config"}} in env_from


def test_service_pdb_and_hpa_point_at_the_deployment(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployment = objects["Deployment", "herald"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = objects["Service", "herald"]["spec"]
    assert service["selector"].items() <= pod_labels.items()
    port_names = {p["name"] for p in container(objects, "Deployment", "herald")["ports"]}
    assert all(p["targetPort"] in port_names for p in service["ports"])
    pdb = objects["PodDisruptionBudget", "herald"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["maxUnavailable"] == 1
    hpa = objects["HorizontalPodAutoscaler", "herald"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "herald"}
    # The PDB must leave a replica for clients to reconnect to at the HPA's floor.
    assert hpa["minReplicas"] - pdb["maxUnavailable"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_redis_is_one_persistent_statefulset_behind_the_url_herald_uses(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    url = urlsplit(config(objects)["HERALD_REDIS_URL"])
    service = objects["Service", url.hostname or ""]
    assert [p["port"] for p in service["spec"]["ports"]] == [url.port or 6379]
    statefulset = objects["StatefulSet", "redis"]
    assert statefulset["spec"]["replicas"] == 1
    assert service["spec"]["selector"].items() <= statefulset["spec"]["template"]["metadata"]["labels"].items()
    redis = container(objects, "StatefulSet", "redis")
    args = redis["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    data_dir = args[args.index("--dir") + 1]
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": data_dir} in redis["volumeMounts"]


def test_redis_manifest_points_to_sentinel_and_cluster() -> None:
    text = (K8S / "redis.yaml").read_text()
    assert "Sentinel" in text and "Cluster" in text
