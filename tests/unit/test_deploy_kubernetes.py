"""deploy/kubernetes, validated against the Kubernetes API's JSON Schemas (bundled by
kubernetes-validate) offline, and checked against the application and the images: setting names,
ports, probe paths, the user id, Secrets and mounted files."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ptsp_gate.config import Settings
from ptsp_gate.policy import load_policy_book
from ptsp_gate.runtime.service import Service, ServiceSpec
from tests.unit.deploy_files import (
    K8S,
    SERVICES,
    by_kind,
    compose,
    container,
    defaults,
    docs,
    image_uid,
    load,
    manifest_files,
    pod_spec,
    settings_env_names,
    walk,
    workloads,
)

PROBE_PATHS = {"/health", "/ready", "/metrics"}
# The oldest Kubernetes minor the manifests are meant for, and the newest the schemas know.
K8S_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
CRD_KINDS = {"PodMonitor", "PrometheusRule", "ServiceMonitor"}


def _default_partitions() -> int:
    """The partition count the compose stack's topics get: the deployment's reference size."""
    script = " ".join(compose()["services"]["topics"]["command"])
    counts = {int(n) for n in re.findall(r"--partitions (\d+)", script)}
    (count,) = counts
    return count


def _graceful_timeout_s() -> float:
    configured = by_kind("ConfigMap")["ptsp-gate-config"]["data"].get(
        "PTSP_GATE_GRACEFUL_TIMEOUT_S"
    )
    return float(configured) if configured is not None else defaults().graceful_timeout_s


def _secret_examples() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs(K8S / "secret.example.yaml")}


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_kubernetes_manifests_match_the_api_schemas(path: Path) -> None:
    for doc in docs(path):
        if doc["kind"] in CRD_KINDS:
            continue  # not in the core API's schemas; checked in test_deploy_monitoring.py
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(map(str, exc.path))
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} ({version}) {where}: {exc}")


def test_kustomizations_list_every_manifest_but_the_secret_example() -> None:
    listed: set[Path] = set()
    for kustomization in sorted(K8S.rglob("kustomization.yaml")):
        config = load(kustomization)
        assert config["kind"] == "Kustomization"
        for entry in config["resources"]:
            resource = (kustomization.parent / entry).resolve()
            assert resource.exists(), (kustomization, entry)
            if resource.is_file():
                listed.add(resource)
    expected = {p.resolve() for p in manifest_files()} - {(K8S / "secret.example.yaml").resolve()}
    assert listed == expected
    # The Prometheus Operator's CRDs only in their own overlay: a cluster without the operator
    # must still accept `kubectl apply -k deploy/kubernetes`.
    for path in (K8S / "base").glob("*.yaml"):
        assert not {d.get("kind") for d in docs(path)} & CRD_KINDS, path


def test_kustomize_renders_both_entry_points() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    for directory in (K8S, K8S / "prometheus-operator"):
        rendered = subprocess.run(
            [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
        )
        assert rendered.returncode == 0, rendered.stderr
        rendered_docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
        kinds = {d["kind"] for d in rendered_docs}
        assert {"Namespace", "ConfigMap", "Job", "Deployment", "Service"} <= kinds
        assert ("PodMonitor" in kinds) == (directory.name == "prometheus-operator")
        for doc in rendered_docs:
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == "ptsp-gate", doc["metadata"]
        for doc in rendered_docs:
            for node in walk(doc):
                if isinstance(node.get("image"), str):
                    assert re.search(r":\d+\.\d+\.\d+$", node["image"]), node["image"]


def test_kubernetes_sets_only_real_settings() -> None:
    known = settings_env_names()
    config = by_kind("ConfigMap")["ptsp-gate-config"]["data"]
    assert not set(config) - known, set(config) - known
    for workload in workloads():
        names = {e["name"] for e in container(workload).get("env", [])}
        assert not names - known, (workload["metadata"]["name"], names - known)


def test_deployments_run_each_service_with_probes_the_app_serves() -> None:
    deployments = by_kind("Deployment")
    k8s_services = by_kind("Service")
    assert set(deployments) == set(SERVICES)
    for name, port in SERVICES.items():
        deployment = deployments[name]
        spec = container(deployment)
        assert spec["args"] == ["run", name, "--port", str(port)]
        (metrics_port,) = spec["ports"]
        assert metrics_port == {"name": "metrics", "containerPort": port, "protocol": "TCP"}
        probes = {
            kind: spec[kind]["httpGet"]
            for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        assert probes["livenessProbe"]["path"] == "/health"
        assert probes["readinessProbe"]["path"] == "/ready"
        assert probes["startupProbe"]["path"] == "/health"
        assert all(p["port"] in {"metrics", port} for p in probes.values())
        # /ready checks the broker, then PostgreSQL, each within 2 s.
        assert spec["readinessProbe"]["timeoutSeconds"] > 4
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics",
        }
        service = k8s_services[name]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert service["spec"]["ports"] == [
            {"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}
        ]
        assert service["spec"]["publishNotReadyAddresses"] is True
        resources_ = spec["resources"]
        assert resources_["requests"]["cpu"]
        assert resources_["requests"]["memory"]
        assert resources_["limits"]["memory"]


def test_the_probe_and_metrics_paths_are_routes_of_the_app() -> None:
    spec = ServiceSpec(
        name="permit-checker",
        topic="t",
        group="g",
        policies=load_policy_book(None),
        make_handler=lambda ctx: None,  # type: ignore[arg-type,return-value]
    )
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:9", database_url="postgresql://x@127.0.0.1:9/x"
    )
    app = Service(spec, settings).asgi_app()
    assert {path for path, _ in app.routes} >= PROBE_PATHS

    async def status(path: str) -> int:
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [],
            "server": ("127.0.0.1", 9101),
            "client": ("127.0.0.1", 50000),
        }
        await app(scope, receive, send)
        return int(sent[0]["status"])

    # Liveness and metrics answer without a broker or database; readiness needs both.
    assert asyncio.run(status("/health")) == 200
    assert asyncio.run(status("/metrics")) == 200


def test_pods_run_as_the_image_user_without_privileges() -> None:
    uid = image_uid()
    restricted = load(K8S / "base" / "namespace.yaml")["metadata"]["labels"]
    assert restricted["pod-security.kubernetes.io/enforce"] == "restricted"
    for workload in workloads():
        pod = pod_spec(workload)
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == uid, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        context = container(workload)["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"] == {"drop": ["ALL"]}, name
        assert context["readOnlyRootFilesystem"] is True, name


def test_deployments_have_a_writable_tmp_and_their_secret_files_mounted() -> None:
    config = by_kind("ConfigMap")["ptsp-gate-config"]["data"]
    secrets = _secret_examples()
    file_settings = {
        k: v for k, v in config.items() if k.endswith(("_FILE", "_CAFILE", "_CERTFILE", "_KEYFILE"))
    }
    assert "PTSP_GATE_KAFKA_SASL_PASSWORD_FILE" in file_settings
    for deployment in by_kind("Deployment").values():
        pod = pod_spec(deployment)
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container(deployment)["volumeMounts"]}
        assert "emptyDir" in mounts["/tmp"]
        for setting, file_path in file_settings.items():
            directory, _, key = file_path.rpartition("/")
            volume = mounts[directory]
            secret = secrets[volume["secret"]["secretName"]]
            assert key in secret["stringData"], (setting, file_path)


def test_every_secret_reference_names_a_key_of_the_secret_example() -> None:
    secrets = _secret_examples()
    assert all(s["kind"] == "Secret" for s in secrets.values())
    for workload in workloads():
        for env in container(workload).get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]]["stringData"], ref
        for volume in pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
    database = container(by_kind("Job")["ptsp-gate-migrate"])
    assert database["args"] == ["migrate"]
    assert {e["name"] for e in database["env"]} >= {"DATABASE_URL"}


def test_termination_grace_covers_both_drain_steps() -> None:
    # The consumer drains, then the outbox relay: each may take the graceful timeout.
    needed = 2 * _graceful_timeout_s() + 10
    for deployment in by_kind("Deployment").values():
        assert pod_spec(deployment)["terminationGracePeriodSeconds"] >= needed


def test_replicas_fit_the_partitions_and_rollouts_never_add_a_consumer() -> None:
    partitions = _default_partitions()
    for deployment in by_kind("Deployment").values():
        spec = deployment["spec"]
        assert 1 <= spec["replicas"] <= partitions
        assert spec["strategy"]["rollingUpdate"]["maxSurge"] == 0
