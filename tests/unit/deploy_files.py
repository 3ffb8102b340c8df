"""The deployment files as the tests read them: compose, the Kubernetes manifests, the images.

Docker cannot run here, so the files are checked as files: test_deploy_compose.py,
test_deploy_kubernetes.py, test_deploy_monitoring.py and test_deploy_images.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices

from ptsp_gate.config import Settings

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
SERVICES = {"permit-checker": 9101, "enrolment-sync": 9102}
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


def mount_target(service: str, source: str) -> str:
    for name, path, target in bind_mounts():
        if name == service and path.resolve() == (DEPLOY / source).resolve():
            return target
    raise AssertionError(f"{service} does not mount {source}")


# --- Kubernetes ----------------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    manifests = (doc for path in manifest_files() for doc in docs(path))
    return {d["metadata"]["name"]: d for d in manifests if d["kind"] == kind}


def workloads() -> list[dict[str, Any]]:
    return [*by_kind("Deployment").values(), *by_kind("Job").values()]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod_spec(workload)["containers"]
    result: dict[str, Any] = only
    return result


# --- the application -----------------------------------------------------------------------------


def defaults() -> Settings:
    """The settings' defaults, whatever the environment running the tests sets."""
    return Settings.model_construct()


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
