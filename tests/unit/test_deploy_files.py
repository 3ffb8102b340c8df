"""Docker cannot run here; check what can be checked of the deployment files.

The compose file is validated against the Compose Specification's JSON Schema (as vendored by
check-jsonschema) and the Kubernetes manifests against the API's JSON Schemas (bundled by
kubernetes-validate), both offline. The rest checks that the files agree with each other and with
the application: setting names, ports, probe paths, the user id, mounted files.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator, MutableMapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import AliasChoices

from ptsp_gate.config import Settings
from ptsp_gate.policy import load_policy_book
from ptsp_gate.runtime.service import Service, ServiceSpec

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
SERVICES = {"permit-checker": 9101, "enrolment-sync": 9102}
PROBE_PATHS = {"/health", "/ready", "/metrics"}
# The oldest Kubernetes minor the manifests are meant for, and the newest the schemas know.
K8S_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
CRD_KINDS = {"PodMonitor", "PrometheusRule", "ServiceMonitor"}
RULES = DEPLOY / "prometheus" / "rules" / "ptsp-gate.rules.yml"
PROMETHEUS_RULE = K8S / "prometheus-operator" / "prometheusrule.yaml"
PROMETHEUS_RULE_HEAD = """\
# The rules of deploy/prometheus/rules/ptsp-gate.rules.yml for the Prometheus Operator: spec.groups
# is a copy of that file's groups, which a unit test keeps equal. After changing the rules,
# rewrite this file with `.venv/bin/python tests/unit/test_deploy_files.py`.
# When your Prometheus' ruleSelector requires a label (kube-prometheus-stack's default:
# release=<its release name>), add it with a `labels` entry in an overlay's kustomization.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: ptsp-gate
  labels:
    app.kubernetes.io/name: ptsp-gate
    app.kubernetes.io/part-of: ptsp-gate
spec:
"""


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = _load(DEPLOY / "compose.yaml")
    return compose


def _ptsp_gate_services() -> dict[str, dict[str, Any]]:
    """The compose services that run the ptsp-gate image."""
    compose = _compose()
    return {
        name: svc
        for name, svc in compose["services"].items()
        if str(svc.get("image", "")).startswith("ptsp-gate:")
    }


def _manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def _manifests() -> list[dict[str, Any]]:
    return [doc for path in _manifest_files() for doc in _docs(path)]


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _manifests() if d["kind"] == kind}


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = _pod_spec(workload)["containers"]
    result: dict[str, Any] = container
    return result


def _settings_env_names() -> set[str]:
    """Every environment variable `Settings` reads."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(c.upper() for c in alias.choices if isinstance(c, str))
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add((prefix + field_name).upper())
    return names


def _port_argument(command: list[str]) -> int:
    return int(command[command.index("--port") + 1])


def _default_partitions() -> int:
    """The partition count the compose stack's topics get: the deployment's reference size."""
    script = " ".join(_compose()["services"]["topics"]["command"])
    counts = {int(n) for n in re.findall(r"--partitions (\d+)", script)}
    (count,) = counts
    return count


def _graceful_timeout_s() -> float:
    configured = _by_kind("ConfigMap")["ptsp-gate-config"]["data"].get(
        "PTSP_GATE_GRACEFUL_TIMEOUT_S"
    )
    return float(configured) if configured is not None else _defaults().graceful_timeout_s


def _defaults() -> Settings:
    """The settings' defaults, whatever the environment running the tests sets."""
    return Settings.model_construct()


def _containerfile_uid() -> int:
    (user,) = re.findall(r"^USER (\d+)(?::\d+)?$", (DEPLOY / "Containerfile").read_text(), re.M)
    return int(user)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


# --- every file ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yml", ".yaml", ".json"} and p.is_file()),
    ids=lambda p: str(p.relative_to(DEPLOY)),
)
def test_every_yaml_and_json_file_under_deploy_parses(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        assert json.loads(text) is not None
    else:
        assert [d for d in yaml.safe_load_all(text) if d is not None]


# --- compose ---------------------------------------------------------------------------------


def test_compose_follows_the_compose_specification() -> None:
    ref = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(ref.read_text(encoding="utf-8"))
    assert schema["title"] == "Compose Specification"
    validator_class = jsonschema.validators.validator_for(schema)
    errors = sorted(
        validator_class(schema).iter_errors(_compose()), key=lambda e: list(e.absolute_path)
    )
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


def test_compose_parses_and_wires_the_services() -> None:
    services = _compose()["services"]
    assert {
        "kafka",
        "topics",
        "postgres",
        "migrate",
        "permit-checker",
        "enrolment-sync",
        "prometheus",
        "grafana",
    } <= set(services)
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in SERVICES:
        svc = services[name]
        assert svc["command"][:2] == ["run", name]
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert set(svc["environment"]) >= {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"}


def test_compose_services_are_health_checked_on_ready_restarted_and_bounded() -> None:
    services = _compose()["services"]
    for name, port in SERVICES.items():
        svc = services[name]
        assert _port_argument(svc["command"]) == port
        check = " ".join(svc["healthcheck"]["test"])
        # The image has Python and no curl.
        assert svc["healthcheck"]["test"][:2] == ["CMD", "python"]
        assert f"http://127.0.0.1:{port}/ready" in check
        assert svc["restart"] in {"unless-stopped", "always", "on-failure"}
        limits = svc["deploy"]["resources"]["limits"]
        assert limits["memory"]
        assert limits["cpus"]
        assert svc["read_only"] is True
        assert any(t.split(":")[0] == "/tmp" for t in svc["tmpfs"])
        grace_s = int(svc["stop_grace_period"].removesuffix("s"))
        assert grace_s >= 2 * float(svc["environment"]["PTSP_GATE_GRACEFUL_TIMEOUT_S"]) + 10
    for name in ("kafka", "postgres", "prometheus", "grafana"):
        assert services[name]["restart"] == "unless-stopped", name
    for name in ("kafka", "postgres", "prometheus"):
        assert services[name]["healthcheck"]["test"], name


def test_compose_images_are_pinned() -> None:
    for name, svc in _compose()["services"].items():
        image = str(svc["image"])
        if image.startswith("ptsp-gate:"):
            continue  # built here from deploy/Containerfile
        repository, _, tag = image.rpartition(":")
        assert repository, (name, image)
        assert re.search(r"\d", tag), (name, image)
        assert tag != "latest", (name, image)
    images = {svc["image"].rpartition(":")[0] for svc in _compose()["services"].values()}
    assert {"apache/kafka", "postgres", "prom/prometheus", "grafana/grafana"} <= images


def test_compose_creates_every_default_topic() -> None:
    script = _compose()["services"]["topics"]["command"]
    text = " ".join(script)
    s = _defaults()
    for topic in s.all_topics():
        assert topic in text
    # The enrolment topic carries one employer's whole state per key: compacted.
    (compacted,) = [line for line in text.split("\n") if "cleanup.policy=compact" in line]
    assert s.topic_enrolment in compacted
    assert _compose()["services"]["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] in {
        "false",
        False,
    }


def test_compose_sets_only_real_settings() -> None:
    known = _settings_env_names()
    for name, svc in _ptsp_gate_services().items():
        unknown = set(svc["environment"]) - known
        assert not unknown, (name, unknown)


def test_compose_secrets_come_from_the_env_file_example() -> None:
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    example = DEPLOY / ".env.example"
    defined = {
        line.split("=", 1)[0]
        for line in example.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    }
    assert used == defined
    assert {"POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} <= used
    # Interpolated from deploy/.env, never written in the compose file.
    services = _compose()["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${")
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${")


def _bind_mounts() -> Iterator[tuple[str, Path, str]]:
    for name, svc in _compose()["services"].items():
        for volume in svc.get("volumes", []):
            if isinstance(volume, dict):
                if volume.get("type") == "bind":
                    yield name, DEPLOY / volume["source"], volume["target"]
                continue
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                yield name, DEPLOY / source, target


def test_every_file_mounted_or_built_by_compose_is_in_the_repository() -> None:
    mounts = list(_bind_mounts())
    assert mounts
    for service, source, _ in mounts:
        assert source.exists(), (service, source)
    build = _compose()["services"]["migrate"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]).is_file()


def _mount_target(service: str, source: str) -> str:
    for name, path, target in _bind_mounts():
        if name == service and path.resolve() == (DEPLOY / source).resolve():
            return target
    raise AssertionError(f"{service} does not mount {source}")


# --- Prometheus and Grafana ------------------------------------------------------------------


def test_prometheus_scrapes_each_service_on_the_port_it_listens_on() -> None:
    config = _load(DEPLOY / "prometheus" / "prometheus.yml")
    compose_services = _compose()["services"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in SERVICES:
        job = jobs[name]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        targets = [t for sc in job["static_configs"] for t in sc["targets"]]
        port = _port_argument(compose_services[name]["command"])
        assert targets == [f"{name}:{port}"]
    assert (
        _mount_target("prometheus", "prometheus/prometheus.yml") == "/etc/prometheus/prometheus.yml"
    )
    assert (
        "--config.file=/etc/prometheus/prometheus.yml" in compose_services["prometheus"]["command"]
    )


def test_prometheus_loads_the_rule_files_from_their_mount() -> None:
    config = _load(DEPLOY / "prometheus" / "prometheus.yml")
    target = _mount_target("prometheus", "prometheus/rules")
    assert config["rule_files"] == [f"{target}/*.yml"]
    # A rules file the glob misses would be silently ignored.
    rule_files = [p for p in RULES.parent.iterdir() if p.suffix in {".yml", ".yaml"}]
    assert RULES in rule_files
    for path in rule_files:
        assert fnmatch.fnmatch(f"{target}/{path.name}", config["rule_files"][0]), path


def test_prometheus_config_passes_promtool_with_the_rules_loaded(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is required under CI (Debian package prometheus)")
        pytest.skip("promtool not installed (Debian package prometheus)")
    # The rules as the container sees them: the mount's directory stands in for its target.
    config = _load(DEPLOY / "prometheus" / "prometheus.yml")
    target = _mount_target("prometheus", "prometheus/rules")
    config["rule_files"] = [f.replace(target, str(RULES.parent), 1) for f in config["rule_files"]]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config), encoding="utf-8")
    checked = subprocess.run(
        [promtool, "check", "config", str(local)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_grafana_datasource_is_the_compose_prometheus_with_a_fixed_uid() -> None:
    config = _load(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = config["datasources"]
    assert source["uid"] == "prometheus"
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "--web.listen-address" not in " ".join(_compose()["services"]["prometheus"]["command"])
    target = _mount_target("grafana", "grafana/provisioning")
    assert target == "/etc/grafana/provisioning"


def test_grafana_loads_the_dashboards_directory() -> None:
    config = _load(DEPLOY / "grafana" / "provisioning" / "dashboards" / "ptsp-gate.yml")
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == _mount_target("grafana", "grafana/dashboards")


def test_dashboards_use_the_provisioned_datasource() -> None:
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for node in _walk(dashboard):
            source = node.get("datasource")
            if isinstance(source, dict) and source.get("type") == "prometheus":
                uid = str(source.get("uid", ""))
                assert uid == "prometheus" or uid.startswith("$"), (path.name, source)


# --- Kubernetes ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_kubernetes_manifests_match_the_api_schemas(path: Path) -> None:
    for doc in _docs(path):
        if doc["kind"] in CRD_KINDS:
            continue  # not in the core API's schemas; checked below
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(map(str, exc.path))
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} ({version}) {where}: {exc}")


def test_kustomizations_list_every_manifest_but_the_secret_example() -> None:
    listed: set[Path] = set()
    for kustomization in sorted(K8S.rglob("kustomization.yaml")):
        config = _load(kustomization)
        assert config["kind"] == "Kustomization"
        for entry in config["resources"]:
            resource = (kustomization.parent / entry).resolve()
            assert resource.exists(), (kustomization, entry)
            if resource.is_file():
                listed.add(resource)
    expected = {p.resolve() for p in _manifest_files()} - {(K8S / "secret.example.yaml").resolve()}
    assert listed == expected
    # The Prometheus Operator's CRDs only in their own overlay: a cluster without the operator
    # must still accept `kubectl apply -k deploy/kubernetes`.
    for path in (K8S / "base").glob("*.yaml"):
        assert not {d.get("kind") for d in _docs(path)} & CRD_KINDS, path


def test_kustomize_renders_both_entry_points() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    for directory in (K8S, K8S / "prometheus-operator"):
        rendered = subprocess.run(
            [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
        )
        assert rendered.returncode == 0, rendered.stderr
        docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
        kinds = {d["kind"] for d in docs}
        assert {"Namespace", "ConfigMap", "Job", "Deployment", "Service"} <= kinds
        assert ("PodMonitor" in kinds) == (directory.name == "prometheus-operator")
        for doc in docs:
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == "ptsp-gate", doc["metadata"]
        for doc in docs:
            for node in _walk(doc):
                if isinstance(node.get("image"), str):
                    assert re.search(r":\d+\.\d+\.\d+$", node["image"]), node["image"]


def test_kubernetes_sets_only_real_settings() -> None:
    known = _settings_env_names()
    config = _by_kind("ConfigMap")["ptsp-gate-config"]["data"]
    assert not set(config) - known, set(config) - known
    for workload in [*_by_kind("Deployment").values(), *_by_kind("Job").values()]:
        names = {e["name"] for e in _container(workload).get("env", [])}
        assert not names - known, (workload["metadata"]["name"], names - known)


def test_deployments_run_each_service_with_probes_the_app_serves() -> None:
    deployments = _by_kind("Deployment")
    k8s_services = _by_kind("Service")
    assert set(deployments) == set(SERVICES)
    for name, port in SERVICES.items():
        deployment = deployments[name]
        container = _container(deployment)
        assert container["args"] == ["run", name, "--port", str(port)]
        (metrics_port,) = container["ports"]
        assert metrics_port == {"name": "metrics", "containerPort": port, "protocol": "TCP"}
        probes = {
            kind: container[kind]["httpGet"]
            for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        assert probes["livenessProbe"]["path"] == "/health"
        assert probes["readinessProbe"]["path"] == "/ready"
        assert probes["startupProbe"]["path"] == "/health"
        assert all(p["port"] in {"metrics", port} for p in probes.values())
        # /ready checks the broker, then PostgreSQL, each within 2 s.
        assert container["readinessProbe"]["timeoutSeconds"] > 4
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
        resources_ = container["resources"]
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
    uid = _containerfile_uid()
    restricted = _load(K8S / "base" / "namespace.yaml")["metadata"]["labels"]
    assert restricted["pod-security.kubernetes.io/enforce"] == "restricted"
    for workload in [*_by_kind("Deployment").values(), *_by_kind("Job").values()]:
        pod = _pod_spec(workload)
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == uid, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        container = _container(workload)
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"] == {"drop": ["ALL"]}, name
        assert context["readOnlyRootFilesystem"] is True, name


def test_deployments_have_a_writable_tmp_and_their_secret_files_mounted() -> None:
    config = _by_kind("ConfigMap")["ptsp-gate-config"]["data"]
    secrets = _secret_examples()
    file_settings = {
        k: v for k, v in config.items() if k.endswith(("_FILE", "_CAFILE", "_CERTFILE", "_KEYFILE"))
    }
    assert "PTSP_GATE_KAFKA_SASL_PASSWORD_FILE" in file_settings
    for deployment in _by_kind("Deployment").values():
        pod = _pod_spec(deployment)
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {
            m["mountPath"]: volumes[m["name"]] for m in _container(deployment)["volumeMounts"]
        }
        assert "emptyDir" in mounts["/tmp"]
        for setting, file_path in file_settings.items():
            directory, _, key = file_path.rpartition("/")
            volume = mounts[directory]
            secret = secrets[volume["secret"]["secretName"]]
            assert key in secret["stringData"], (setting, file_path)


def _secret_examples() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _docs(K8S / "secret.example.yaml")}


def test_every_secret_reference_names_a_key_of_the_secret_example() -> None:
    secrets = _secret_examples()
    assert all(s["kind"] == "Secret" for s in secrets.values())
    for workload in [*_by_kind("Deployment").values(), *_by_kind("Job").values()]:
        for env in _container(workload).get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]]["stringData"], ref
        for volume in _pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
    database = _container(_by_kind("Job")["ptsp-gate-migrate"])
    assert database["args"] == ["migrate"]
    assert {e["name"] for e in database["env"]} >= {"DATABASE_URL"}


def test_termination_grace_covers_both_drain_steps() -> None:
    # The consumer drains, then the outbox relay: each may take the graceful timeout.
    needed = 2 * _graceful_timeout_s() + 10
    for deployment in _by_kind("Deployment").values():
        assert _pod_spec(deployment)["terminationGracePeriodSeconds"] >= needed


def test_replicas_fit_the_partitions_and_rollouts_never_add_a_consumer() -> None:
    partitions = _default_partitions()
    for deployment in _by_kind("Deployment").values():
        spec = deployment["spec"]
        assert 1 <= spec["replicas"] <= partitions
        assert spec["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_podmonitor_selects_the_service_pods_and_names_jobs_as_compose_does() -> None:
    (monitor,) = _docs(K8S / "prometheus-operator" / "podmonitor.yaml")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "PodMonitor"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    selector = monitor["spec"]["selector"]
    (expression,) = selector["matchExpressions"]
    job_label = monitor["spec"]["jobLabel"]
    compose_jobs = {
        job["job_name"] for job in _load(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]
    }
    for name, deployment in _by_kind("Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector["matchLabels"].items() <= labels.items()
        assert labels[expression["key"]] in expression["values"]
        assert labels[job_label] == name
        assert name in compose_jobs
    assert (
        _by_kind("Job")["ptsp-gate-migrate"]["spec"]["template"]["metadata"]["labels"][
            expression["key"]
        ]
        not in expression["values"]
    )


def prometheus_rule_text() -> str:
    """The PrometheusRule manifest: the rules file's groups, comments included, under spec."""
    text = RULES.read_text(encoding="utf-8")
    start = re.search(r"^groups:", text, re.M)
    assert start is not None
    lines = text[start.start() :].splitlines(keepends=True)
    return PROMETHEUS_RULE_HEAD + "".join("  " + line if line.strip() else line for line in lines)


def test_prometheusrule_carries_exactly_the_rules_file_groups() -> None:
    rule = _load(PROMETHEUS_RULE)
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    groups = _load(RULES)["groups"]
    assert groups
    assert rule["spec"]["groups"] == groups, (
        "the PrometheusRule differs from the rules file: .venv/bin/python " + __file__
    )


# --- image -----------------------------------------------------------------------------------


def test_container_runs_as_non_root() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    assert "USER 10001" in text
    assert _containerfile_uid() != 0
    assert 'ENTRYPOINT ["ptsp-gate"]' in text
    for line in text.splitlines():
        if line.startswith("FROM "):
            image = shlex.split(line)[1]
            assert re.search(r":\d+\.\d+\.\d+", image), line


if __name__ == "__main__":
    PROMETHEUS_RULE.write_text(prometheus_rule_text(), encoding="utf-8")
    print(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)}")
