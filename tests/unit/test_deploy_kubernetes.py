"""deploy/kubernetes, validated against the Kubernetes API's JSON Schemas (bundled by
kubernetes-validate) offline, and checked against the application and the images: setting names,
ports, probe paths, the user id, Secrets and mounted files; the entry points kustomize renders,
the disruption budgets and how the pods spread over nodes and zones. The network policies and
the KEDA layer have test files of their own."""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ptsp_gate.adapters import migrations
from ptsp_gate.config import Settings
from ptsp_gate.policy import load_policy_book
from ptsp_gate.runtime.registry import entry_for
from ptsp_gate.runtime.service import Service, ServiceSpec
from tests.unit.deploy_files import (
    CONSOLE,
    CONSOLE_DB_LOGIN,
    CONSOLE_DB_ROLE,
    K8S,
    KAFKA_SERVICES,
    KEDA_COMPONENT,
    KEDA_ENTRY,
    ROOT,
    SERVER_ENV_NAMES,
    SERVICES,
    by_kind,
    config_maps_read,
    container,
    database_url_user,
    default_partitions,
    defaults,
    docs,
    environment,
    image_uid,
    is_kafka_setting,
    is_local_config,
    kustomize,
    load,
    manifest_files,
    pod_labels,
    pod_spec,
    selects,
    settings_env_names,
    walk,
    workloads,
)

PROBE_PATHS = {"/health", "/ready", "/metrics"}
# The name of each service's one port: the Kafka services serve only metrics and probes on it;
# the console its pages and API too, behind an Ingress.
PORT_NAMES = {name: "metrics" for name in KAFKA_SERVICES} | {CONSOLE: "http"}
# The oldest Kubernetes minor the manifests are meant for, and the newest the schemas know.
K8S_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
# Custom resources, not in the core API's schemas: the Prometheus Operator's are checked in
# test_deploy_monitoring.py, KEDA's in test_deploy_autoscaling.py.
OPERATOR_KINDS = {"PodMonitor", "PrometheusRule", "ServiceMonitor"}
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
CRD_KINDS = OPERATOR_KINDS | KEDA_KINDS
# Where `kubectl apply -k` starts: whether each brings the Prometheus Operator's objects and
# KEDA's. The last is an overlay of the operator's own with KEDA, as deploy/README.md writes it.
ENTRY_POINTS = {
    K8S: (False, False),
    K8S / "prometheus-operator": (True, False),
    KEDA_ENTRY: (False, True),
}


def _graceful_timeout_s() -> float:
    configured = by_kind("ConfigMap")["ptsp-gate-config"]["data"].get(
        "PTSP_GATE_GRACEFUL_TIMEOUT_S"
    )
    return float(configured) if configured is not None else defaults().graceful_timeout_s


def _secret_examples() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs(K8S / "secret.example.yaml")}


def _database_url_key(workload: dict[str, Any]) -> tuple[str, str]:
    """The Secret and key a workload's DATABASE_URL comes from."""
    (env,) = [e for e in container(workload)["env"] if e["name"] == "DATABASE_URL"]
    ref = env["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def _status(app: Any, path: str, port: int) -> int:
    """The status an ASGI app answers a GET of `path` with, called without its lifespan (so
    without a broker or database)."""
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
        "server": ("127.0.0.1", port),
        "client": ("127.0.0.1", 50000),
    }
    asyncio.run(app(scope, receive, send))
    return int(sent[0]["status"])


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_kubernetes_manifests_match_the_api_schemas(path: Path) -> None:
    for doc in docs(path):
        if doc["kind"] in CRD_KINDS:
            continue  # not in the core API's schemas; see CRD_KINDS
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(map(str, exc.path))
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} ({version}) {where}: {exc}")


def test_kustomizations_list_every_manifest_but_the_secret_example() -> None:
    listed: set[Path] = set()
    components_used: set[Path] = set()
    components: set[Path] = set()
    for kustomization in sorted(K8S.rglob("kustomization.yaml")):
        config = load(kustomization)
        if config["kind"] == "Component":
            assert config["apiVersion"] == "kustomize.config.k8s.io/v1alpha1", kustomization
            components.add(kustomization.parent.resolve())
        else:
            assert config["kind"] == "Kustomization", kustomization
        for entry in config.get("resources", []):
            resource = (kustomization.parent / entry).resolve()
            assert resource.exists(), (kustomization, entry)
            if resource.is_file():
                listed.add(resource)
        for entry in config.get("components", []):
            component = (kustomization.parent / entry).resolve()
            assert (component / "kustomization.yaml").is_file(), (kustomization, entry)
            components_used.add(component)
    expected = {p.resolve() for p in manifest_files()} - {(K8S / "secret.example.yaml").resolve()}
    assert listed == expected
    # Every component has an entry point that applies it as it is.
    assert components == components_used == {KEDA_COMPONENT.resolve()}
    # Custom resources only in their optional layers: a cluster without the Prometheus Operator
    # or KEDA must still accept `kubectl apply -k deploy/kubernetes`.
    for path in (K8S / "base").glob("*.yaml"):
        assert not {d.get("kind") for d in docs(path)} & CRD_KINDS, path
    for path in KEDA_COMPONENT.glob("*.yaml"):
        assert {d.get("kind") for d in docs(path)} <= KEDA_KINDS | {"Component"}, path


def _check_rendered(rendered: list[dict[str, Any]], *, operator: bool, keda: bool) -> None:
    kinds = {d["kind"] for d in rendered}
    assert {
        "Namespace",
        "ConfigMap",
        "Job",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
    } <= kinds
    assert ("PodMonitor" in kinds) is operator
    assert ("ScaledObject" in kinds) is keda
    for doc in rendered:
        assert not is_local_config(doc), doc["metadata"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "ptsp-gate", doc["metadata"]
        for node in walk(doc):
            if isinstance(node.get("image"), str):
                assert re.search(r":\d+\.\d+\.\d+$", node["image"]), node["image"]
    # Under KEDA, the HPA it creates owns the Kafka services' replica counts: a count in the
    # Deployment would be set back on every apply. The console keeps its own.
    deployments = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Deployment"}
    for name in KAFKA_SERVICES:
        assert ("replicas" in deployments[name]["spec"]) is not keda, name
    assert deployments[CONSOLE]["spec"]["replicas"] >= 2


@pytest.mark.parametrize(
    "directory", sorted(ENTRY_POINTS), ids=lambda p: str(p.relative_to(K8S)) or "."
)
def test_kustomize_renders_each_entry_point(directory: Path) -> None:
    operator, keda = ENTRY_POINTS[directory]
    _check_rendered(kustomize(directory), operator=operator, keda=keda)


def test_kustomize_renders_the_operator_overlay_with_keda(tmp_path: Path) -> None:
    # The overlay deploy/README.md tells a cluster with both to write.
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    resource = os.path.relpath(K8S / "prometheus-operator", overlay)
    component = os.path.relpath(KEDA_COMPONENT, overlay)
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [resource],
                "components": [component],
            }
        ),
        encoding="utf-8",
    )
    _check_rendered(kustomize(overlay), operator=True, keda=True)


def test_kubernetes_sets_only_real_settings() -> None:
    known = settings_env_names() | SERVER_ENV_NAMES
    config_maps = by_kind("ConfigMap")
    assert {"ptsp-gate-config", "ptsp-gate-console-config"} <= set(config_maps)
    for name, config_map in config_maps.items():
        assert not set(config_map["data"]) - known, (name, set(config_map["data"]) - known)
    for workload in workloads():
        names = {e["name"] for e in container(workload).get("env", [])}
        assert not names - known, (workload["metadata"]["name"], names - known)
        for env in container(workload).get("env", []):
            ref = env.get("valueFrom", {}).get("configMapKeyRef")
            if ref:
                assert ref["key"] in config_maps[ref["name"]]["data"], ref


def test_deployments_run_each_service_with_probes_the_app_serves() -> None:
    deployments = by_kind("Deployment")
    k8s_services = by_kind("Service")
    assert set(deployments) == set(SERVICES)
    for name, port in SERVICES.items():
        deployment = deployments[name]
        spec = container(deployment)
        port_name = PORT_NAMES[name]
        assert spec["args"] == ["run", name, "--port", str(port)]
        (only_port,) = spec["ports"]
        assert only_port == {"name": port_name, "containerPort": port, "protocol": "TCP"}
        probes = {
            kind: spec[kind]["httpGet"]
            for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        assert probes["livenessProbe"]["path"] == "/health"
        assert probes["readinessProbe"]["path"] == "/ready"
        assert probes["startupProbe"]["path"] == "/health"
        assert all(p["port"] in {port_name, port} for p in probes.values())
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
            {"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}
        ]
        # An idle consumer's metrics stay reachable; officers reach only a console that is ready.
        assert service["spec"].get("publishNotReadyAddresses", False) is (name in KAFKA_SERVICES)
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
    # Liveness and metrics answer without a broker or database; readiness needs both.
    assert _status(app, "/health", SERVICES["permit-checker"]) == 200
    assert _status(app, "/metrics", SERVICES["permit-checker"]) == 200


def test_the_probe_and_metrics_paths_are_routes_of_the_console() -> None:
    settings = Settings(database_url="postgresql://x@127.0.0.1:9/x")
    app = entry_for(CONSOLE).web(settings, load_policy_book(None)).asgi_app()
    assert {getattr(route, "path", None) for route in app.routes} >= PROBE_PATHS
    # Liveness and metrics answer without a database, readiness needs it.
    assert _status(app, "/health", SERVICES[CONSOLE]) == 200
    assert _status(app, "/metrics", SERVICES[CONSOLE]) == 200
    assert _status(app, "/ready", SERVICES[CONSOLE]) == 503


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
    assert "PTSP_GATE_KAFKA_SASL_PASSWORD_FILE" in config
    secrets = _secret_examples()
    for deployment in by_kind("Deployment").values():
        pod = pod_spec(deployment)
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container(deployment)["volumeMounts"]}
        assert "emptyDir" in mounts["/tmp"]
        file_settings = {
            k: v
            for data in config_maps_read(deployment)
            for k, v in data.items()
            if k.endswith(("_FILE", "_CAFILE", "_CERTFILE", "_KEYFILE"))
        }
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


def test_the_console_connects_with_a_database_login_of_its_own() -> None:
    secrets = _secret_examples()
    deployments = by_kind("Deployment")
    owner_key = _database_url_key(by_kind("Job")["ptsp-gate-migrate"])
    for name in KAFKA_SERVICES:
        assert _database_url_key(deployments[name]) == owner_key, name
    console_key = _database_url_key(deployments[CONSOLE])
    assert console_key != owner_key
    owner_url = secrets[owner_key[0]]["stringData"][owner_key[1]]
    console_url = secrets[console_key[0]]["stringData"][console_key[1]]
    assert database_url_user(console_url) == CONSOLE_DB_LOGIN != database_url_user(owner_url)


def _console_grants(sql: str) -> set[str]:
    """The GRANT statements to the console's role in SQL text, whitespace collapsed."""
    pattern = rf"\bGRANT\s[^;]*?\sTO\s+{CONSOLE_DB_ROLE}\s*;"
    return {" ".join(statement.split()) for statement in re.findall(pattern, sql)}


def test_the_runbook_grants_the_console_role_what_the_migrations_grant() -> None:
    # Where the migrating user may not create roles, an administrator runs the runbook's grants
    # by hand: they must be the migrations' own, no more and no fewer.
    granted = set().union(*(_console_grants(m.sql) for m in migrations.available()))
    assert len(granted) >= 6
    runbook = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert _console_grants(runbook) == granted
    assert f"IN ROLE {CONSOLE_DB_ROLE};" in runbook


def test_the_console_gets_no_kafka_setting_or_credential() -> None:
    console = by_kind("Deployment")[CONSOLE]
    variables = environment(console)
    assert "DATABASE_URL" in variables
    assert not [name for name in variables if is_kafka_setting(name)]
    secrets = {
        volume["secret"]["secretName"]
        for volume in pod_spec(console)["volumes"]
        if "secret" in volume
    }
    assert "ptsp-gate-kafka" not in secrets
    # Behind the Ingress' TLS its cookies are Secure, and must stay so.
    assert variables["PTSP_GATE_CONSOLE_SECURE_COOKIES"] == "true"
    # Both ends of an override's rules read one re-decision window.
    (window,) = [
        e for e in container(console)["env"] if e["name"] == "PTSP_GATE_REDECIDE_WINDOW_DAYS"
    ]
    assert window["valueFrom"]["configMapKeyRef"]["name"] == "ptsp-gate-config"
    for name in KAFKA_SERVICES:
        assert "PTSP_GATE_REDECIDE_WINDOW_DAYS" in environment(by_kind("Deployment")[name])


def test_termination_grace_covers_both_drain_steps() -> None:
    # The consumer drains, then the outbox relay: each may take the graceful timeout.
    needed = 2 * _graceful_timeout_s() + 10
    deployments = by_kind("Deployment")
    for name in KAFKA_SERVICES:
        assert pod_spec(deployments[name])["terminationGracePeriodSeconds"] >= needed


def test_termination_grace_lets_the_console_finish_its_requests() -> None:
    console = by_kind("Deployment")[CONSOLE]
    configured = environment(console).get("PTSP_GATE_STATEMENT_TIMEOUT_S")
    needed = float(configured) if configured else defaults().statement_timeout_s
    pre_stop = container(console).get("lifecycle", {}).get("preStop", {})
    command = pre_stop.get("exec", {}).get("command", [])
    if command:
        assert command[:1] == ["sleep"], command
        needed += float(command[1])
    assert pod_spec(console)["terminationGracePeriodSeconds"] >= needed + 10


def test_replicas_fit_the_partitions_and_rollouts_never_add_a_consumer() -> None:
    partitions = default_partitions()
    deployments = by_kind("Deployment")
    for name in KAFKA_SERVICES:
        spec = deployments[name]["spec"]
        assert 1 <= spec["replicas"] <= partitions
        assert spec["strategy"]["rollingUpdate"]["maxSurge"] == 0
    # No consumer group: the console keeps every replica serving while a new one starts.
    spec = deployments[CONSOLE]["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def _disruptions_allowed(budget: dict[str, Any], replicas: int) -> int:
    """How many pods a PodDisruptionBudget lets be evicted with `replicas` ready ones, as the
    disruption controller counts: percentages round up."""

    def scaled(value: int | str) -> int:
        if isinstance(value, str):
            return math.ceil(int(value.removesuffix("%")) * replicas / 100)
        return value

    spec = budget["spec"]
    if "maxUnavailable" in spec:
        return max(scaled(spec["maxUnavailable"]), 0)
    return max(replicas - scaled(spec["minAvailable"]), 0)


def _replica_counts(name: str) -> set[int]:
    """The replica counts a Deployment runs at: its own, or under KEDA each count from the
    ScaledObject's floor to its ceiling."""
    counts = {by_kind("Deployment")[name]["spec"]["replicas"]}
    scaled = by_kind("ScaledObject").get(name)
    if scaled is not None:
        spec = scaled["spec"]
        counts |= set(range(spec["minReplicaCount"], spec["maxReplicaCount"] + 1))
    return counts


def test_each_deployment_has_a_disruption_budget_of_its_own_pods() -> None:
    budgets = by_kind("PodDisruptionBudget")
    deployments = by_kind("Deployment")
    assert set(budgets) == set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        selector = budgets[name]["spec"]["selector"]
        # The Deployment's own selector, which selects its pods and no other workload's.
        assert selector == deployment["spec"]["selector"], name
        assert selects(selector, pod_labels(deployment)), name
        others = [w for w in workloads() if w["metadata"]["name"] != name]
        assert not [w for w in others if selects(selector, pod_labels(w))], name


def test_each_budget_allows_one_eviction_and_keeps_a_pod_at_every_replica_count() -> None:
    budgets = by_kind("PodDisruptionBudget")
    for name, budget in budgets.items():
        counts = _replica_counts(name)
        assert counts, name
        for replicas in counts:
            allowed = _disruptions_allowed(budget, replicas)
            # A drain can go on (one pod at a time), and never takes the last one.
            assert 1 <= allowed < replicas, (name, replicas, allowed)
        # A pod that is not ready serves nothing, and must not hold a drain up.
        assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow", name


def test_deployments_spread_over_nodes_as_a_rule_and_over_zones_as_a_preference() -> None:
    for name, deployment in by_kind("Deployment").items():
        constraints = {
            c["topologyKey"]: c for c in pod_spec(deployment)["topologySpreadConstraints"]
        }
        assert set(constraints) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
        for constraint in constraints.values():
            assert constraint["maxSkew"] == 1, name
            # Counts the Deployment's own pods, and each rollout's apart.
            assert constraint["labelSelector"] == deployment["spec"]["selector"], name
            assert constraint["matchLabelKeys"] == ["pod-template-hash"], name
        nodes = constraints["kubernetes.io/hostname"]
        assert nodes["whenUnsatisfiable"] == "DoNotSchedule", name
        # Cordoned, failed and control-plane nodes would otherwise count as empty domains and
        # make the rule unsatisfiable during a drain.
        assert nodes["nodeTaintsPolicy"] == "Honor", name
        # Clusters without zones (or zone labels) still schedule the pods.
        assert constraints["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "ScheduleAnyway"
