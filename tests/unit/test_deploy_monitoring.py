"""Prometheus and Grafana as compose runs them, and the Prometheus Operator's PodMonitor and
PrometheusRule: scrape targets, rule files, datasources and job labels agree with the services.

Run as a module (`.venv/bin/python -m tests.unit.test_deploy_monitoring`), this rewrites
deploy/kubernetes/prometheus-operator/prometheusrule.yaml from the rules file.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.deploy_files import (
    DEPLOY,
    K8S,
    PROMETHEUS_CONFIG,
    ROOT,
    SERVICES,
    by_kind,
    compose,
    container,
    docs,
    load,
    mount_target,
    port_argument,
    walk,
)

RULES = DEPLOY / "prometheus" / "rules" / "ptsp-gate.rules.yml"
PROMETHEUS_RULE = K8S / "prometheus-operator" / "prometheusrule.yaml"
PROMETHEUS_RULE_HEAD = """\
# The rules of deploy/prometheus/rules/ptsp-gate.rules.yml for the Prometheus Operator: spec.groups
# is a copy of that file's groups, which a unit test keeps equal. After changing the rules,
# rewrite this file with `.venv/bin/python -m tests.unit.test_deploy_monitoring`.
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


# --- Prometheus and Grafana in compose -----------------------------------------------------------


def test_prometheus_scrapes_each_service_on_the_port_it_listens_on() -> None:
    config = load(PROMETHEUS_CONFIG)
    compose_services = compose()["services"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in SERVICES:
        job = jobs[name]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        targets = [t for sc in job["static_configs"] for t in sc["targets"]]
        port = port_argument(compose_services[name]["command"])
        assert targets == [f"{name}:{port}"]
    assert (
        mount_target("prometheus", "prometheus/prometheus.yml") == "/etc/prometheus/prometheus.yml"
    )
    assert (
        "--config.file=/etc/prometheus/prometheus.yml" in compose_services["prometheus"]["command"]
    )


def test_prometheus_loads_the_rule_files_from_their_mount() -> None:
    config = load(PROMETHEUS_CONFIG)
    target = mount_target("prometheus", "prometheus/rules")
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
    config = load(PROMETHEUS_CONFIG)
    target = mount_target("prometheus", "prometheus/rules")
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
    config = load(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = config["datasources"]
    assert source["uid"] == "prometheus"
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "--web.listen-address" not in " ".join(compose()["services"]["prometheus"]["command"])
    target = mount_target("grafana", "grafana/provisioning")
    assert target == "/etc/grafana/provisioning"


def test_grafana_loads_the_dashboards_directory() -> None:
    config = load(DEPLOY / "grafana" / "provisioning" / "dashboards" / "ptsp-gate.yml")
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == mount_target("grafana", "grafana/dashboards")


def test_dashboards_use_the_provisioned_datasource() -> None:
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for node in walk(dashboard):
            source = node.get("datasource")
            if isinstance(source, dict) and source.get("type") == "prometheus":
                uid = str(source.get("uid", ""))
                assert uid == "prometheus" or uid.startswith("$"), (path.name, source)


# --- the Prometheus Operator ---------------------------------------------------------------------


def test_podmonitor_selects_the_service_pods_and_names_jobs_as_compose_does() -> None:
    (monitor,) = docs(K8S / "prometheus-operator" / "podmonitor.yaml")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "PodMonitor"
    endpoints = {e["port"]: e for e in monitor["spec"]["podMetricsEndpoints"]}
    assert len(endpoints) == len(monitor["spec"]["podMetricsEndpoints"])
    assert all(e["path"] == "/metrics" for e in endpoints.values())
    selector = monitor["spec"]["selector"]
    (expression,) = selector["matchExpressions"]
    job_label = monitor["spec"]["jobLabel"]
    compose_jobs = {job["job_name"] for job in load(PROMETHEUS_CONFIG)["scrape_configs"]}
    deployments = by_kind("Deployment")
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector["matchLabels"].items() <= labels.items()
        assert labels[expression["key"]] in expression["values"]
        assert labels[job_label] == name
        assert name in compose_jobs
        # An endpoint scrapes the pods with a port of its name: each service's port has one.
        (port,) = container(deployment)["ports"]
        assert port["containerPort"] == SERVICES[name]
        assert port["name"] in endpoints, name
    assert (
        by_kind("Job")["ptsp-gate-migrate"]["spec"]["template"]["metadata"]["labels"][
            expression["key"]
        ]
        not in expression["values"]
    )


def _job_matchers(expr: str) -> set[str]:
    """The jobs a PromQL expression's job="..." and job=~"a|b" matchers name."""
    jobs: set[str] = set()
    for operator, value in re.findall(r'\bjob\s*(=~|=)\s*"([^"]*)"', expr):
        if "$" in value:
            continue  # a Grafana variable, checked below
        jobs.update(value.split("|") if operator == "=~" else [value])
    return jobs


def test_rules_and_dashboards_select_only_jobs_prometheus_scrapes() -> None:
    scraped = {job["job_name"] for job in load(PROMETHEUS_CONFIG)["scrape_configs"]}
    assert set(SERVICES) <= scraped
    rules = [rule for group in load(RULES)["groups"] for rule in group["rules"]]
    selected: set[str] = set()
    for rule in rules:
        jobs = _job_matchers(rule["expr"])
        assert jobs <= scraped, (rule.get("alert") or rule.get("record"), jobs - scraped)
        selected |= jobs
    # Every service has rules of its own.
    assert set(SERVICES) <= selected
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for node in walk(dashboard):
            expr = node.get("expr")
            if isinstance(expr, str):
                assert _job_matchers(expr) <= scraped, (path.name, expr)
        # "All" in the service picker means every service.
        (job,) = [v for v in dashboard["templating"]["list"] if v["name"] == "job"]
        assert set(job["allValue"].split("|")) == set(SERVICES), path.name
        assert _job_matchers(job["query"]["query"]) == set(SERVICES), path.name


def prometheus_rule_text() -> str:
    """The PrometheusRule manifest: the rules file's groups, comments included, under spec."""
    text = RULES.read_text(encoding="utf-8")
    start = re.search(r"^groups:", text, re.M)
    assert start is not None
    lines = text[start.start() :].splitlines(keepends=True)
    return PROMETHEUS_RULE_HEAD + "".join("  " + line if line.strip() else line for line in lines)


def test_prometheusrule_carries_exactly_the_rules_file_groups() -> None:
    rule = load(PROMETHEUS_RULE)
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    groups = load(RULES)["groups"]
    assert groups
    assert rule["spec"]["groups"] == groups, (
        "the PrometheusRule differs from the rules file: "
        ".venv/bin/python -m tests.unit.test_deploy_monitoring"
    )


if __name__ == "__main__":
    PROMETHEUS_RULE.write_text(prometheus_rule_text(), encoding="utf-8")
    print(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)}")
