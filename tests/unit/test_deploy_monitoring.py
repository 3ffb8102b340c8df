"""Prometheus and Grafana as compose runs them, and the Prometheus Operator's PodMonitor and
PrometheusRule: scrape targets, rule files, datasources and job labels agree with the services;
the dashboards import anywhere and provision in compose; every runbook link is built from the
address each deployment sets.

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
from typing import Any

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
    kustomize,
    load,
    local_config,
    mount_target,
    port_argument,
    walk,
)

RULES = DEPLOY / "prometheus" / "rules" / "ptsp-gate.rules.yml"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
OPERATOR = K8S / "prometheus-operator"
PROMETHEUS_RULE = OPERATOR / "prometheusrule.yaml"
# The external label each runbook_url is built from, and the anchors that follow it.
RUNBOOK_LABEL = "ptsp_gate_runbook_url"
RUNBOOK_TEMPLATE = re.compile(r"\{\{ \$externalLabels\." + RUNBOOK_LABEL + r" \}\}#([a-z]+)")
# The compose one-shot that fills in the dashboards' import inputs, and its variable from
# deploy/.env.
DASHBOARDS_ONE_SHOT = "grafana-dashboards"
RUNBOOK_ENV = "RUNBOOK_URL"
PROMETHEUS_RULE_HEAD = """\
# The rules of deploy/prometheus/rules/ptsp-gate.rules.yml for the Prometheus Operator: spec.groups
# is a copy of that file's groups, which a unit test keeps equal. After changing the rules,
# rewrite this file with `.venv/bin/python -m tests.unit.test_deploy_monitoring`. The runbook
# links' address is written in when kustomize renders it, from runbook.yaml.
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
    config = load(DATASOURCES)
    (source,) = config["datasources"]
    assert source["uid"] == "prometheus"
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "--web.listen-address" not in " ".join(compose()["services"]["prometheus"]["command"])
    target = mount_target("grafana", "grafana/provisioning")
    assert target == "/etc/grafana/provisioning"


def _volume_mount(service: str, volume: str) -> list[str]:
    """A named volume's mount in a compose service: [volume, target] or [volume, target, mode]."""
    for entry in compose()["services"][service]["volumes"]:
        parts: list[str] = entry.split(":")
        if parts[0] == volume:
            return parts
    raise AssertionError(f"{service} does not mount the volume {volume}")


def _volume_target(service: str, volume: str) -> str:
    return _volume_mount(service, volume)[1]


def _dashboards() -> dict[str, dict[str, Any]]:
    found = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in DASHBOARDS.glob("*.json")}
    assert found
    return found


def _tokens(text: str) -> set[str]:
    """The ${NAME} references in a dashboard: its variables' and its import inputs'."""
    return set(re.findall(r"\$\{(\w+)(?::\w+)?\}", text))


def test_grafana_loads_the_dashboards_with_their_inputs_filled_in() -> None:
    config = load(DEPLOY / "grafana" / "provisioning" / "dashboards" / "ptsp-gate.yml")
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    services = compose()["services"]
    one_shot = services[DASHBOARDS_ONE_SHOT]
    # Grafana reads the volume the one-shot writes, once it has written it, and nothing else.
    (volume,) = [v.split(":")[0] for v in one_shot["volumes"] if not v.startswith(".")]
    assert provider["options"]["path"] == _volume_target("grafana", volume)
    assert _volume_mount("grafana", volume)[2:] == ["ro"]
    condition = services["grafana"]["depends_on"][DASHBOARDS_ONE_SHOT]["condition"]
    assert condition == "service_completed_successfully"
    assert volume in compose()["volumes"]
    # The one-shot reads the repository's dashboards, and fills in the provisioned datasource.
    assert mount_target(DASHBOARDS_ONE_SHOT, "grafana/dashboards")
    (source,) = load(DATASOURCES)["datasources"]
    assert one_shot["environment"]["DATASOURCE_UID"] == source["uid"]
    assert one_shot["image"] == services["grafana"]["image"]
    assert one_shot["network_mode"] == "none"
    assert one_shot["read_only"] is True


def test_dashboards_import_anywhere_through_a_datasource_variable() -> None:
    for name, dashboard in _dashboards().items():
        inputs = {i["name"]: i for i in dashboard["__inputs"]}
        datasources = [i for i in inputs.values() if i["type"] == "datasource"]
        assert [(i["pluginId"], i["name"]) for i in datasources] == [
            ("prometheus", "DS_PROMETHEUS")
        ]
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        variable = variables["datasource"]
        assert variable["type"] == "datasource", name
        assert variable["query"] == "prometheus", name
        # The import form's choice lands in the variable, and nowhere else: Grafana's file
        # provisioning leaves ${DS_PROMETHEUS} as it is, so a panel naming it would break there.
        assert variable["current"]["value"] == "${DS_PROMETHEUS}", name
        text = json.dumps(dashboard)
        assert text.count("${DS_PROMETHEUS}") == 1, name
        # Where it is left as it is (a sidecar that loads the file unchanged), Grafana falls
        # back to the datasource named as the variable's text: the one compose provisions.
        (source,) = load(DATASOURCES)["datasources"]
        assert variable["current"]["text"] == source["name"], name
        for node in walk(dashboard):
            datasource = node.get("datasource")
            if isinstance(datasource, dict) and datasource.get("type") == "prometheus":
                assert datasource["uid"] == "${datasource}", (name, datasource)
            assert not isinstance(datasource, str), (name, datasource)
        # Every reference is a variable of the dashboard, an input, or one of Grafana's own.
        known = set(variables) | set(inputs)
        unknown = {t for t in _tokens(text) if not t.startswith("__")} - known
        assert not unknown, (name, unknown)


def test_the_dashboard_runbook_link_is_an_import_input() -> None:
    for name, dashboard in _dashboards().items():
        inputs = {i["name"]: i for i in dashboard["__inputs"]}
        assert inputs["VAR_RUNBOOK_URL"]["type"] == "constant", name
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["runbook_url"]["type"] == "constant", name
        assert variables["runbook_url"]["query"] == "${VAR_RUNBOOK_URL}", name
        (link,) = [link for link in dashboard["links"] if link.get("title") == "Runbook"]
        assert link["url"] == "${runbook_url}", name
        assert "github.com" not in json.dumps(dashboard["links"]), name


def _one_shot_script() -> str:
    """The one-shot's shell script as its shell gets it: compose's $$ unescaped."""
    (script,) = compose()["services"][DASHBOARDS_ONE_SHOT]["command"]
    text: str = script.replace("$$", "$")
    return text


def test_compose_fills_in_the_dashboards_inputs_as_the_import_form_would(tmp_path: Path) -> None:
    shell = shutil.which("sh")
    if shell is None:
        pytest.skip("no POSIX shell")
    one_shot = compose()["services"][DASHBOARDS_ONE_SHOT]
    source = mount_target(DASHBOARDS_ONE_SHOT, "grafana/dashboards")
    target = _volume_target(DASHBOARDS_ONE_SHOT, "grafana-dashboards")
    written = tmp_path / "provisioned"
    written.mkdir()
    (written / "removed.json").write_text("{}", encoding="utf-8")
    script = _one_shot_script().replace(target, str(written)).replace(source, str(DASHBOARDS))
    # Characters that mean something to sed, in an address a wiki could well have.
    url = "https://wiki.example.go.id/ops?page=ptsp|gate&x=1"
    env = {"PATH": os.environ["PATH"], **_plain(one_shot["environment"]), RUNBOOK_ENV: url}
    done = subprocess.run(
        [shell, "-c", script], env=env, capture_output=True, text=True, check=False, timeout=30
    )
    assert done.returncode == 0, done.stderr
    # Whatever the volume held before is replaced by the repository's dashboards.
    assert {p.name for p in written.iterdir()} == set(_dashboards())
    for name in _dashboards():
        filled = json.loads((written / name).read_text(encoding="utf-8"))
        variables = {v["name"]: v for v in filled["templating"]["list"]}
        assert variables["datasource"]["current"]["value"] == env["DATASOURCE_UID"]
        assert variables["runbook_url"]["query"] == url
        assert not {t for t in _tokens(json.dumps(filled)) if t.startswith(("DS_", "VAR_"))}
    # What is not an address, or would not stay one in JSON, stops the stack from starting
    # with a dashboard that links nowhere.
    for wrong in (
        "docs/operations.md",
        "https://",
        'https://x/a"b',
        "https://x/a\\b",
        "https://x/ a",
    ):
        env[RUNBOOK_ENV] = wrong
        refused = subprocess.run(
            [shell, "-c", script], env=env, capture_output=True, text=True, check=False, timeout=30
        )
        assert refused.returncode != 0, wrong
        assert RUNBOOK_ENV in refused.stderr, wrong


def _plain(environment: dict[str, Any]) -> dict[str, str]:
    """A compose environment as the container gets it, ${VAR:-default} taken at its default."""
    return {
        key: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value)) for key, value in environment.items()
    }


# --- where the runbook is -------------------------------------------------------------------


def _env_example() -> dict[str, str]:
    lines = (DEPLOY / ".env.example").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_every_alert_links_its_runbook_through_the_external_label() -> None:
    for group in load(RULES)["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                match = RUNBOOK_TEMPLATE.fullmatch(rule["annotations"]["runbook_url"])
                assert match, rule["alert"]
                assert match.group(1) == rule["alert"].lower()
    assert "github.com" not in RULES.read_text(encoding="utf-8")


def test_compose_prometheus_sets_the_runbook_address_from_the_env_file() -> None:
    config = load(PROMETHEUS_CONFIG)
    assert config["global"]["external_labels"][RUNBOOK_LABEL] == "${" + RUNBOOK_ENV + "}"
    prometheus = compose()["services"]["prometheus"]
    default = _env_example()[RUNBOOK_ENV]
    assert prometheus["environment"][RUNBOOK_ENV] == f"${{{RUNBOOK_ENV}:-{default}}}"
    # Prometheus expands ${...} in external labels from version 3 on, without a feature flag.
    (major,) = re.findall(r":v(\d+)\.", prometheus["image"])
    assert int(major) >= 3
    assert not [f for f in prometheus["command"] if "expand-external-labels" in f]


def test_one_default_runbook_address_everywhere() -> None:
    default = _env_example()[RUNBOOK_ENV]
    assert default.startswith("https://")
    assert default.endswith("/docs/operations.md")
    assert local_config("ptsp-gate-runbook")["data"]["url"] == default
    one_shot = compose()["services"][DASHBOARDS_ONE_SHOT]
    assert _plain(one_shot["environment"])[RUNBOOK_ENV] == default
    for dashboard in _dashboards().values():
        inputs = {i["name"]: i for i in dashboard["__inputs"]}
        assert inputs["VAR_RUNBOOK_URL"]["value"] == default


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


def test_the_operator_overlay_writes_the_runbook_address_into_every_alert() -> None:
    # A shared Prometheus needs no external label of ours: kustomize writes the address in.
    address = local_config("ptsp-gate-runbook")["data"]["url"]
    (rule,) = [d for d in kustomize(OPERATOR) if d["kind"] == "PrometheusRule"]
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts
    for alert in alerts:
        assert alert["annotations"]["runbook_url"] == f"{address}#{alert['alert'].lower()}"


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
