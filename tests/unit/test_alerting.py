"""The alert rules, their promtool unit tests and the Grafana dashboard: valid, annotated, and
referring only to metrics the services actually expose."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ptsp_gate.adapters.kafka import make_broker
from ptsp_gate.config import Settings
from ptsp_gate.observability.metrics import Metrics

ROOT = Path(__file__).parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "ptsp-gate.rules.yml"
RULE_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.test.yml"))
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "ptsp-gate.json"
# Where the runbook is published differs per province: each alert's link is the external label
# of the Prometheus evaluating the rules, then the alert's anchor (docs/decisions/0009).
RUNBOOK_LABEL = "ptsp_gate_runbook_url"
RUNBOOK = "{{ $externalLabels." + RUNBOOK_LABEL + " }}#"
SEVERITIES = {"critical", "warning", "info"}
# Every panel, target, annotation and query variable names the dashboard's datasource variable,
# so that the dashboard works with whichever Prometheus it is imported or provisioned with.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Series Prometheus itself provides.
BUILTIN_SERIES = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds"}

INSTALL_HINT = "Debian/Ubuntu: apt-get install prometheus (scripts/setup does it when run as root)"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"promtool is required under CI; {INSTALL_HINT}")
        pytest.skip(f"promtool is not installed; {INSTALL_HINT}")
    return path


def _run(*args: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a collapsed row holds its panels


def _dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target, annotation and template variable."""
    dashboard = _dashboard()
    queries = [
        (f"panel {panel['id']} {panel.get('title')!r}", target["expr"])
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]
    queries += [
        (f"annotation {a['name']!r}", a["expr"])
        for a in dashboard.get("annotations", {}).get("list", [])
        if "expr" in a
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        inner = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", text)
        if inner:  # Grafana's label_values(), not PromQL: check the selector inside
            queries.append((f"variable {variable['name']!r}", inner.group(1)))
    return queries


# --- PromQL metric names -------------------------------------------------------------------

_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "atan2",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions or aggregations
    (followed by a parenthesis), keywords, label names, durations or Grafana variables."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    text = re.sub(r"#[^\n]*", "", text)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", "", text)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*", text):
        word = match.group()
        if text[match.end() :].lstrip().startswith("(") or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def test_metric_name_parser() -> None:
    expr = """
        histogram_quantile(0.95, sum by (job, le) (rate(a_bucket{job=~"x|y", le!="1"}[5m])))
          > 1e3 * 60
        and on (job) group_left (version) b_total offset 10m
        or sum without (topic) (c:d:sum) / ignoring (x) max(e[10m:1m])
        unless absent(f{instance="$instance"}) * 0 + time() - g[$__rate_interval] > bool 2
    """
    assert metric_names(expr) == {"a_bucket", "b_total", "c:d:sum", "e", "f", "g"}


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
}


def exposed_names() -> set[str]:
    """Every series name a service's /metrics can show: the domain metrics and FastStream's,
    registered exactly as the services register them."""
    metrics = Metrics()
    metrics.expose_enrolment_projection()  # as enrolment-sync does
    metrics.expose_console()  # as officer-console does
    settings = Settings(
        kafka_bootstrap_servers=["127.0.0.1:9092"], kafka_security_protocol="PLAINTEXT"
    )
    make_broker(settings, metrics.registry)
    names: set[str] = set()
    for family in metrics.registry.collect():
        # A labelled metric has no samples until its first use, hence the names by type too.
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def test_every_referenced_metric_exists() -> None:
    known = exposed_names() | BUILTIN_SERIES
    known |= {rule["record"] for rule in _rules() if "record" in rule}
    assert "faststream_received_processed_messages_total" in known
    queries = [(rule.get("alert") or rule["record"], rule["expr"]) for rule in _rules()]
    queries += _dashboard_queries()
    used: set[str] = set()
    unknown = []
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        used |= names
        unknown += [f"{where}: {name}" for name in sorted(names - known)]
    assert not unknown, "metrics no service exposes:\n" + "\n".join(unknown)
    assert {"ptsp_gate_decisions_total", "ptsp_gate_outbox_oldest_age_seconds", "up"} <= used
    assert {
        "ptsp_gate_console_requests_total",
        "ptsp_gate_console_request_duration_seconds_bucket",
        "ptsp_gate_console_failed_logins_total",
        "ptsp_gate_override_settle_runs_total",
    } <= used


# --- Alert rules --------------------------------------------------------------------------


def test_promtool_checks_the_rules(promtool: str) -> None:
    _run(promtool, "check", "rules", str(RULES))


def test_promtool_unit_tests_pass(promtool: str) -> None:
    assert RULE_TESTS
    _run(promtool, "test", "rules", *map(str, RULE_TESTS))


def test_every_alert_is_labelled_and_annotated() -> None:
    alerts = _alerts()
    assert alerts
    names = [alert["alert"] for alert in alerts]
    assert len(names) == len(set(names)), "alert names must be unique (they are runbook anchors)"
    for alert in alerts:
        name = alert["alert"]
        assert re.fullmatch(r"PtspGate[A-Z]\w+", name), name
        assert alert.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = alert.get("annotations", {})
        assert annotations.get("summary", "").strip(), name
        assert "$value" in annotations.get("description", ""), f"{name}: state the value"
        assert annotations.get("runbook_url") == RUNBOOK + name.lower(), name


def test_rule_tests_build_runbook_links_from_the_external_label() -> None:
    # promtool renders the annotation templates with the external labels of each test group, as
    # Prometheus does with its own.
    checked = 0
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            base = case.get("external_labels", {}).get(RUNBOOK_LABEL)
            for check in case.get("alert_rule_test", []):
                for alert in check.get("exp_alerts") or []:
                    url = alert.get("exp_annotations", {}).get("runbook_url")
                    if url is None:
                        continue
                    where = f"{path.name}: {case.get('name')}"
                    assert base, f"{where}: no external label {RUNBOOK_LABEL}"
                    assert url == f"{base}#{check['alertname'].lower()}", where
                    checked += 1
    assert checked >= len(_alerts())


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    cases = [case for f in RULE_TESTS for case in yaml.safe_load(f.read_text())["tests"]]
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {alert["alert"] for alert in _alerts()}
    assert not names - fires, f"no case where these fire: {sorted(names - fires)}"
    assert not names - quiet, f"no case where these stay quiet: {sorted(names - quiet)}"
    assert not (fires | quiet) - names, "tests for alerts that do not exist"


# --- Dashboard ------------------------------------------------------------------------------


def test_dashboard_is_well_formed() -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"]
    panels = list(_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels:
        assert panel.get("title", "").strip(), f"panel {panel['id']} has no title"
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            assert annotation["datasource"] == DATASOURCE, annotation["name"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= set(variables)
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == DATASOURCE["type"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]
    top = sorted((p for p in panels if p["gridPos"]["y"] == 0), key=lambda p: p["gridPos"]["x"])
    assert len(top) >= 6
    assert all(p["type"] == "stat" for p in top), "the first row is stat panels"


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """promtool parses each query as a recording rule, with Grafana's variables filled in."""

    def fill(expr: str) -> str:
        expr = re.sub(r"\$\{?__\w+\}?", "5m", expr)
        return re.sub(r"\$\{[^}]*\}|\$\w+", ".*", expr)

    rules = [
        {"record": f"dashboard:query_{i}", "expr": fill(expr)}
        for i, (_, expr) in enumerate(_dashboard_queries())
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    _run(promtool, "check", "rules", str(path))


def test_every_alert_has_a_runbook_section() -> None:
    runbook = (ROOT / "docs" / "operations.md").read_text()
    headings = {h.strip() for h in re.findall(r"^### (.+)$", runbook, re.M)}
    for alert in _alerts():
        name = alert["alert"]
        assert name in headings, f"docs/operations.md has no section for {name}"
        anchor = alert["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert anchor == name.lower()
