"""deploy/kubernetes/base/network-policies.yaml, evaluated offline as a cluster would: which
peers and ports each workload's pods may reach and be reached from, against what each workload
needs (its PostgreSQL, its Kafka, the identity provider, the trace collector, DNS, Prometheus,
the Ingress controller), and the per-cluster values against their documentation in
deploy/README.md. The manifests' schemas are checked with the others in
test_deploy_kubernetes.py."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

import yaml

from ptsp_gate.observability.tracing import (
    OTLP_ENDPOINT_VARIABLES,
    check_endpoints,
    export_configured,
)
from tests.unit.deploy_files import (
    CONSOLE,
    DEPLOY,
    K8S,
    KAFKA_SERVICES,
    SERVICES,
    by_kind,
    commented_setting,
    config_maps_read,
    container,
    docs,
    environment,
    pod_labels,
    selects,
    workloads,
)

POLICIES = K8S / "base" / "network-policies.yaml"
NAMESPACE_LABEL = "kubernetes.io/metadata.name"
# The console reads the identity provider's discovery document and keys, and calls its token
# endpoint, over HTTPS.
HTTPS = 443
MIGRATE = "ptsp-gate-migrate"
# Trace export: the Kafka services send their spans to a collector over OTLP/HTTP once the
# ConfigMap sets the variable it shows commented out, through this policy's egress.
OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
OTLP_POLICY = "ptsp-gate-otlp"

Port = tuple[str, int]  # (protocol, number)


def _policies() -> list[dict[str, Any]]:
    policies = list(by_kind("NetworkPolicy").values())
    assert policies
    return policies


def _selecting(workload: dict[str, Any], direction: str) -> list[dict[str, Any]]:
    """The policies that apply to a workload's pods in one direction (Ingress or Egress)."""
    labels = pod_labels(workload)
    return [
        p
        for p in _policies()
        if direction in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], labels)
    ]


def _resolve(port: int | str, workload: dict[str, Any]) -> int | None:
    """A policy port as a number on a workload's pods: a named port only opens on the pods that
    have a container port of that name."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container(workload).get("ports", [])}
    return named.get(port)


def _rules(workload: dict[str, Any], direction: str) -> list[tuple[dict[str, Any], set[Port]]]:
    """(peer, ports) for every peer a workload's pods may reach (Egress) or be reached from
    (Ingress), with the ports resolved on those pods."""
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    found = []
    for policy in _selecting(workload, direction):
        for rule in policy["spec"].get(key, []):
            ports = {
                (p.get("protocol", "TCP"), number)
                for p in rule["ports"]
                if (number := _resolve(p["port"], workload)) is not None
            }
            found += [(peer, ports) for peer in rule[peers_key] if ports]
    return found


def _by_name() -> dict[str, dict[str, Any]]:
    return {w["metadata"]["name"]: w for w in workloads()}


def _namespace_of(peer: dict[str, Any]) -> str | None:
    return peer.get("namespaceSelector", {}).get("matchLabels", {}).get(NAMESPACE_LABEL)


def _database_ports() -> set[int]:
    secret = {d["metadata"]["name"]: d for d in docs(K8S / "secret.example.yaml")}
    urls = secret["ptsp-gate-database"]["stringData"].values()
    return {urlsplit(url).port or 5432 for url in urls}


def _bootstrap() -> list[tuple[str, int]]:
    config = by_kind("ConfigMap")["ptsp-gate-config"]["data"]
    servers = [s.strip() for s in config["KAFKA_BOOTSTRAP_SERVERS"].split(",")]
    return [(host, int(port)) for host, _, port in (s.rpartition(":") for s in servers)]


def _otlp_endpoint() -> tuple[str, int]:
    """The collector's host and port, as the ConfigMap's commented hint names them."""
    url = urlsplit(commented_setting(K8S / "base" / "configmap.yaml", OTLP_ENDPOINT))
    assert url.hostname, url
    assert url.port, url
    return url.hostname, url.port


def _cluster_namespace(host: str) -> str | None:
    """The namespace of a Service's in-cluster name (`name.namespace.svc[.cluster.local]`)."""
    match = re.fullmatch(r"[^.]+\.([^.]+)\.svc(?:\.[\w.-]+)?", host)
    return match.group(1) if match else None


def test_everything_is_denied_unless_allowed() -> None:
    (deny,) = [
        p for p in _policies() if p["spec"]["podSelector"] == {} and not _has_rules(p["spec"])
    ]
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    # Every workload is under it in both directions.
    for workload in workloads():
        for direction in ("Ingress", "Egress"):
            assert deny in _selecting(workload, direction), workload["metadata"]["name"]


def _has_rules(spec: dict[str, Any]) -> bool:
    return bool(spec.get("ingress") or spec.get("egress"))


def test_no_rule_allows_any_peer_or_any_port() -> None:
    for policy in _policies():
        name = policy["metadata"]["name"]
        for rule in [*policy["spec"].get("ingress", []), *policy["spec"].get("egress", [])]:
            peers = rule.get("to", rule.get("from"))
            assert peers, f"{name}: a rule without peers allows every address"
            assert rule.get("ports"), f"{name}: a rule without ports allows every port"
            for peer in peers:
                block = peer.get("ipBlock")
                if block:
                    network = ipaddress.ip_network(block["cidr"], strict=True)
                    assert network.prefixlen > 0, f"{name}: {network} is every address"
                else:
                    # A peer that selects by label names its namespace.
                    assert _namespace_of(peer), (name, peer)


def test_each_workload_reaches_dns_postgresql_and_only_what_else_it_needs() -> None:
    database = {("TCP", port) for port in _database_ports()}
    kafka = {("TCP", port) for _, port in _bootstrap()}
    otlp = {("TCP", _otlp_endpoint()[1])}
    dns = {("UDP", 53), ("TCP", 53)}
    wanted = {
        "permit-checker": dns | database | kafka | otlp,
        "enrolment-sync": dns | database | kafka | otlp,
        CONSOLE: dns | database | {("TCP", HTTPS)},
        MIGRATE: dns | database,
    }
    found = _by_name()
    assert set(wanted) == set(found)
    for name, workload in found.items():
        reached = set().union(*(ports for _, ports in _rules(workload, "Egress")))
        assert reached == wanted[name], name
        # Every workload that connects to PostgreSQL or Kafka is configured for it.
        variables = environment(workload)
        assert "DATABASE_URL" in variables, name
        assert ("KAFKA_BOOTSTRAP_SERVERS" in variables) is (name in KAFKA_SERVICES), name


def test_kafka_is_reached_where_the_bootstrap_servers_are() -> None:
    for name in KAFKA_SERVICES:
        workload = by_kind("Deployment")[name]
        for host, port in _bootstrap():
            peers = [peer for peer, ports in _rules(workload, "Egress") if ("TCP", port) in ports]
            namespace = _cluster_namespace(host)
            if namespace is not None:
                # A Service in the cluster: its brokers' namespace.
                assert [p for p in peers if _namespace_of(p) == namespace], (name, host)
            else:
                assert [p for p in peers if "ipBlock" in p], (name, host)


def test_only_the_console_reaches_the_identity_provider() -> None:
    for name, workload in _by_name().items():
        reached = set().union(*(ports for _, ports in _rules(workload, "Egress")))
        assert (("TCP", HTTPS) in reached) is (name == CONSOLE), name


def test_only_the_kafka_services_reach_the_trace_collector() -> None:
    (policy,) = [p for p in _policies() if p["metadata"]["name"] == OTLP_POLICY]
    selected = {
        name
        for name, workload in _by_name().items()
        if selects(policy["spec"]["podSelector"], pod_labels(workload))
    }
    # The officer console exports no spans, and the migrations none either.
    assert selected == set(KAFKA_SERVICES)
    assert policy["spec"]["policyTypes"] == ["Egress"]
    host, port = _otlp_endpoint()
    (rule,) = policy["spec"]["egress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": port}]
    namespace = _cluster_namespace(host)
    for name, workload in _by_name().items():
        peers = [peer for peer, ports in _rules(workload, "Egress") if ("TCP", port) in ports]
        assert bool(peers) is (name in KAFKA_SERVICES), name
        if not peers:
            continue
        if namespace is not None:
            # A Service in the cluster: the collector's namespace.
            assert [p for p in peers if _namespace_of(p) == namespace], (name, host)
        else:
            assert [p for p in peers if "ipBlock" in p], (name, host)
    # The collector's port depends on the cluster, as its address does.
    assert _markers()["otlp-port"] == str(port)


def test_trace_export_ships_off_with_its_setting_hinted() -> None:
    # Unset, nothing is exported: no workload gets an endpoint until the operator uncomments it.
    for name, workload in _by_name().items():
        variables = environment(workload)
        assert not set(OTLP_ENDPOINT_VARIABLES) & set(variables), name
        assert not export_configured({k: v or "" for k, v in variables.items()}), name
    # The hint is an endpoint the services accept once uncommented, in the ConfigMap the two
    # Kafka services read whole and the console does not.
    path = K8S / "base" / "configmap.yaml"
    hint = commented_setting(path, OTLP_ENDPOINT)
    check_endpoints({OTLP_ENDPOINT: hint})
    assert export_configured({OTLP_ENDPOINT: hint})
    text = path.read_text(encoding="utf-8")
    (hinted,) = [yaml.safe_load(d) for d in text.split("\n---\n") if f"# {OTLP_ENDPOINT}:" in d]
    for name, workload in _by_name().items():
        assert (hinted["data"] in config_maps_read(workload)) is (name in KAFKA_SERVICES), name


def test_prometheus_reaches_each_metrics_port_and_officers_only_the_consoles() -> None:
    deployments = by_kind("Deployment")
    namespaces: dict[str, set[str]] = {}
    for name, deployment in deployments.items():
        rules = _rules(deployment, "Ingress")
        # Exactly the port the service listens on, which serves /metrics.
        ports = set().union(*(ports for _, ports in rules))
        assert ports == {("TCP", SERVICES[name])}, name
        namespaces[name] = {ns for peer, _ in rules if (ns := _namespace_of(peer))}
        assert all(_namespace_of(peer) for peer, _ in rules), name
    # The monitoring namespace reaches every service; the Ingress controller's the console alone.
    (monitoring,) = set.intersection(*namespaces.values())
    for name in KAFKA_SERVICES:
        assert namespaces[name] == {monitoring}, name
    (ingress,) = namespaces[CONSOLE] - {monitoring}
    assert ingress != monitoring
    # Nothing calls the migrations.
    assert not _rules(by_kind("Job")[MIGRATE], "Ingress")


def _markers() -> dict[str, str]:
    """The per-cluster values of the policies: marker name → the value shipped."""
    found: dict[str, str] = {}
    for line in POLICIES.read_text(encoding="utf-8").splitlines():
        match = re.search(r":\s*(\S+)\s+# PER-CLUSTER ([a-z-]+)\s*$", line)
        if match:
            value, name = match.groups()
            assert name not in found, f"{name} marked twice"
            found[name] = value
    return found


def test_per_cluster_values_are_marked_and_documented() -> None:
    markers = _markers()
    # Every address and every namespace or pod a policy names depends on the cluster.
    text = POLICIES.read_text(encoding="utf-8")
    for line in text.splitlines():
        if re.search(r"\bcidr:|" + re.escape(NAMESPACE_LABEL) + r":|k8s-app:", line):
            assert "# PER-CLUSTER " in line, line
    # The addresses shipped are reserved for documentation: unset, they let nothing through.
    documentation = [
        ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
    ]
    for name, value in markers.items():
        if name.endswith("-cidr"):
            network = ipaddress.IPv4Network(value)
            assert any(network.subnet_of(d) for d in documentation), (name, value)
    # deploy/README.md lists each with the value shipped.
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    (section,) = re.findall(r"^### Network policies\n(.*?)(?=^#{1,3} )", readme, re.M | re.S)
    documented = dict(re.findall(r"^\| `([a-z-]+)` \| `([^`]+)` \|", section, re.M))
    assert documented == markers
