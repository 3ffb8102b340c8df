"""The deployment files as the tests read them: compose, the Kubernetes manifests, the images.

Docker cannot run here, and no cluster either, so the files are checked as files:
test_deploy_compose.py, test_deploy_kubernetes.py, test_deploy_network_policies.py,
test_deploy_autoscaling.py, test_deploy_monitoring.py and test_deploy_images.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices

from ptsp_gate.config import Settings

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
# The optional layer that autoscales the Kafka services with KEDA, and its entry point.
KEDA_COMPONENT = K8S / "components" / "keda"
KEDA_ENTRY = K8S / "keda"
SERVICES = {"permit-checker": 9101, "enrolment-sync": 9102, "officer-console": 9103}
# The services that consume Kafka topics. The officer console is a web application over PostgreSQL
# alone: the checks of topics, consumer groups, partitions and Kafka credentials leave it out.
KAFKA_SERVICES = ("permit-checker", "enrolment-sync")
CONSOLE = "officer-console"
# The database role migration 0006 creates for the console, and the login role the deployments
# make a member of it: never the schema's owner.
CONSOLE_DB_ROLE = "ptsp_gate_console"
CONSOLE_DB_LOGIN = "ptsp_gate_console_login"
# The image the migrations run from, in compose and in Kubernetes: both images hold the core.
MIGRATE_IMAGE_SERVICE = "permit-checker"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


# --- images --------------------------------------------------------------------------------------


def image_name(service: str) -> str:
    """The image a service runs from, without registry or tag."""
    return f"ptsp-gate-{service}"


def containerfile(service: str) -> Path:
    return ROOT / "services" / service.replace("-", "_") / "Containerfile"


def containerfile_uid(path: Path) -> int:
    (user,) = re.findall(r"^USER (\d+)(?::\d+)?$", path.read_text(encoding="utf-8"), re.M)
    return int(user)


def image_uid() -> int:
    """The user every image runs as."""
    (uid,) = {containerfile_uid(containerfile(service)) for service in SERVICES}
    return uid


# --- compose -------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    config: dict[str, Any] = load(DEPLOY / "compose.yaml")
    return config


def ptsp_gate_services() -> dict[str, dict[str, Any]]:
    """The compose services that run a ptsp-gate image."""
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if str(svc.get("image", "")).startswith("ptsp-gate-")
    }


def port_argument(command: list[str]) -> int:
    return int(command[command.index("--port") + 1])


def bind_mounts() -> Iterator[tuple[str, Path, str]]:
    for name, svc in compose()["services"].items():
        for volume in svc.get("volumes", []):
            if isinstance(volume, dict):
                if volume.get("type") == "bind":
                    yield name, DEPLOY / volume["source"], volume["target"]
                continue
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                yield name, DEPLOY / source, target


def database_url_user(url: str) -> str:
    """The user of a postgresql:// URL whose password may be a compose ${VARIABLE:?message}."""
    match = re.match(r"postgresql://([^:@/]+)[:@]", url)
    assert match, url
    return match.group(1)


def mount_target(service: str, source: str) -> str:
    for name, path, target in bind_mounts():
        if name == service and path.resolve() == (DEPLOY / source).resolve():
            return target
    raise AssertionError(f"{service} does not mount {source}")


# --- Kubernetes ----------------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def is_local_config(doc: dict[str, Any]) -> bool:
    """A value kustomize reads (a replacement's source) and never applies to the cluster."""
    annotations = doc.get("metadata", {}).get("annotations") or {}
    return str(annotations.get("config.kubernetes.io/local-config")).lower() == "true"


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    """What the cluster gets of a kind, by name, from every manifest of every entry point."""
    manifests = (doc for path in manifest_files() for doc in docs(path))
    return {
        d["metadata"]["name"]: d for d in manifests if d["kind"] == kind and not is_local_config(d)
    }


def commented_setting(path: Path, name: str) -> str:
    """The value of a setting a file shows commented out (`# NAME: value`): a hint, not set."""
    text = path.read_text(encoding="utf-8")
    (value,) = re.findall(rf"^\s*#\s*{re.escape(name)}:\s*(\S+)\s*$", text, re.M)
    return value


def local_config(name: str) -> dict[str, Any]:
    (found,) = [
        doc
        for path in manifest_files()
        for doc in docs(path)
        if is_local_config(doc) and doc["metadata"]["name"] == name
    ]
    return found


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions) selects the labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        matched = {
            "In": present and labels.get(key) in (values or []),
            "NotIn": not present or labels.get(key) not in (values or []),
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not matched:
            return False
    return True


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def default_partitions() -> int:
    """The partition count the compose stack's topics get: the deployment's reference size."""
    script = " ".join(compose()["services"]["topics"]["command"])
    counts = {int(n) for n in re.findall(r"--partitions (\d+)", script)}
    (count,) = counts
    return count


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """What `kubectl apply -k DIRECTORY` would apply; skips the test without kubectl."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert rendered.returncode == 0, rendered.stderr
    return [d for d in yaml.safe_load_all(rendered.stdout) if d]


def workloads() -> list[dict[str, Any]]:
    return [*by_kind("Deployment").values(), *by_kind("Job").values()]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod_spec(workload)["containers"]
    result: dict[str, Any] = only
    return result


def config_maps_read(workload: dict[str, Any]) -> list[dict[str, str]]:
    """The data of each ConfigMap a workload's container reads whole (envFrom)."""
    maps = by_kind("ConfigMap")
    return [
        maps[source["configMapRef"]["name"]]["data"]
        for source in container(workload).get("envFrom", [])
        if "configMapRef" in source
    ]


def environment(workload: dict[str, Any]) -> dict[str, str | None]:
    """The variables a workload's container gets, by name: a value, or None for a reference."""
    names: dict[str, str | None] = {}
    for data in config_maps_read(workload):
        names.update(data)
    for env in container(workload).get("env", []):
        names[env["name"]] = env.get("value")
    return names


# --- the application -----------------------------------------------------------------------------


def defaults() -> Settings:
    """The settings' defaults, whatever the environment running the tests sets."""
    return Settings.model_construct()


def is_kafka_setting(name: str) -> bool:
    """Whether an environment variable configures Kafka: the broker, its credentials, the topics
    or the consumer groups."""
    return "KAFKA" in name or name.startswith(
        ("PTSP_GATE_TOPIC_", "PTSP_GATE_GROUP_", "PTSP_GATE_DLQ_")
    )


# Read by uvicorn, which serves every service: the proxies whose X-Forwarded-For is the client's
# address (the officer console's, behind a TLS-terminating proxy).
SERVER_ENV_NAMES = frozenset({"FORWARDED_ALLOW_IPS"})


def settings_env_names() -> set[str]:
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
