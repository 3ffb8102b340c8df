"""deploy/compose.yaml, validated against the Compose Specification's JSON Schema (as vendored by
check-jsonschema) offline, and checked against the application: services, ports, probe paths,
setting names, secrets and mounted files."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from ptsp_gate.adapters import migrations
from ptsp_gate.observability.tracing import OTLP_ENDPOINT_VARIABLES, check_endpoints
from tests.unit.deploy_files import (
    CONSOLE,
    CONSOLE_DB_LOGIN,
    CONSOLE_DB_ROLE,
    DEPLOY,
    KAFKA_SERVICES,
    ROOT,
    SERVER_ENV_NAMES,
    SERVICES,
    bind_mounts,
    commented_setting,
    compose,
    database_url_user,
    defaults,
    is_kafka_setting,
    port_argument,
    ptsp_gate_services,
    settings_env_names,
)


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


def test_compose_follows_the_compose_specification() -> None:
    ref = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(ref.read_text(encoding="utf-8"))
    assert schema["title"] == "Compose Specification"
    validator_class = jsonschema.validators.validator_for(schema)
    errors = sorted(
        validator_class(schema).iter_errors(compose()), key=lambda e: list(e.absolute_path)
    )
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


def test_compose_parses_and_wires_the_services() -> None:
    services = compose()["services"]
    assert {
        "kafka",
        "topics",
        "postgres",
        "migrate",
        "permit-checker",
        "enrolment-sync",
        "officer-console",
        "console-role",
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
        assert "DATABASE_URL" in svc["environment"]
    for name in KAFKA_SERVICES:
        svc = services[name]
        assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert "KAFKA_BOOTSTRAP_SERVERS" in svc["environment"]
    # The console waits for its login role rather than for Kafka, which it never reaches.
    console = services[CONSOLE]
    assert console["depends_on"]["console-role"]["condition"] == "service_completed_successfully"
    assert not {"kafka", "topics"} & set(console["depends_on"])


def test_the_console_gets_no_kafka_setting() -> None:
    environment = compose()["services"][CONSOLE]["environment"]
    assert "DATABASE_URL" in environment
    assert not [name for name in environment if is_kafka_setting(name)]
    # Its cookies stay Secure: a browser accepts them from http://localhost without TLS.
    assert str(environment.get("PTSP_GATE_CONSOLE_SECURE_COOKIES", "true")).lower() == "true"


def test_the_console_connects_as_a_login_role_member_of_the_console_role() -> None:
    services = compose()["services"]
    owner = services["postgres"]["environment"]["POSTGRES_USER"]
    assert database_url_user(services["migrate"]["environment"]["DATABASE_URL"]) == owner
    url = services[CONSOLE]["environment"]["DATABASE_URL"]
    assert database_url_user(url) == CONSOLE_DB_LOGIN != owner
    assert ":${CONSOLE_DB_PASSWORD:?" in url
    # The role the login joins is the one the migrations create and grant the console's rights.
    (grants,) = [m.sql for m in migrations.available() if m.name.startswith("0006_")]
    assert f"CREATE ROLE {CONSOLE_DB_ROLE} NOLOGIN" in grants
    assert f"TO {CONSOLE_DB_ROLE}" in grants
    # A one-shot on the postgres image, as the owner, once the migrations have run.
    one_shot = services["console-role"]
    assert one_shot["image"] == services["postgres"]["image"]
    assert one_shot["restart"] == "no"
    assert one_shot["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    one_shot_env = one_shot["environment"]
    assert one_shot_env["PGUSER"] == owner
    assert one_shot_env["PGPASSWORD"] == services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert one_shot_env["CONSOLE_DB_PASSWORD"].startswith("${CONSOLE_DB_PASSWORD:?")
    script = " ".join(one_shot["command"])
    assert "ON_ERROR_STOP=1" in script
    assert f"CREATE ROLE {CONSOLE_DB_LOGIN} LOGIN" in script
    assert f"GRANT {CONSOLE_DB_ROLE} TO {CONSOLE_DB_LOGIN};" in script
    # The password reaches psql from the environment, never on a command line.
    assert "\\getenv password CONSOLE_DB_PASSWORD" in script
    assert "$CONSOLE_DB_PASSWORD" not in script.replace("$$", "$")


def test_compose_services_are_health_checked_on_ready_restarted_and_bounded() -> None:
    services = compose()["services"]
    for name, port in SERVICES.items():
        svc = services[name]
        assert port_argument(svc["command"]) == port
        # Published to this host only: a proxy in front of it, or a browser on it.
        assert svc["ports"] == [f"127.0.0.1:{port}:{port}"], name
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
        environment = svc["environment"]
        if name in KAFKA_SERVICES:
            # The consumer drains, then the outbox relay, each within the graceful timeout.
            assert grace_s >= 2 * float(environment["PTSP_GATE_GRACEFUL_TIMEOUT_S"]) + 10, name
        else:
            # Requests in flight finish, each query within the statement timeout.
            timeout_s = environment.get("PTSP_GATE_STATEMENT_TIMEOUT_S")
            limit_s = float(timeout_s) if timeout_s else defaults().statement_timeout_s
            assert grace_s >= limit_s + 10, name
    for name in ("kafka", "postgres", "prometheus", "grafana"):
        assert services[name]["restart"] == "unless-stopped", name
    for name in ("kafka", "postgres", "prometheus"):
        assert services[name]["healthcheck"]["test"], name


def test_compose_images_are_pinned() -> None:
    built_here = set(ptsp_gate_services())
    for name, svc in compose()["services"].items():
        image = str(svc["image"])
        if name in built_here:
            continue  # built here from the services' Containerfiles
        repository, _, tag = image.rpartition(":")
        assert repository, (name, image)
        assert re.search(r"\d", tag), (name, image)
        assert tag != "latest", (name, image)
    images = {svc["image"].rpartition(":")[0] for svc in compose()["services"].values()}
    assert {"apache/kafka", "postgres", "prom/prometheus", "grafana/grafana"} <= images


def test_compose_creates_every_default_topic() -> None:
    script = compose()["services"]["topics"]["command"]
    text = " ".join(script)
    s = defaults()
    for topic in s.all_topics():
        assert topic in text
    # The enrolment topic carries one employer's whole state per key: compacted.
    (compacted,) = [line for line in text.split("\n") if "cleanup.policy=compact" in line]
    assert s.topic_enrolment in compacted
    assert compose()["services"]["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] in {
        "false",
        False,
    }


def test_compose_sets_only_real_settings() -> None:
    known = settings_env_names() | SERVER_ENV_NAMES
    services = ptsp_gate_services()
    assert {"migrate", *SERVICES} <= set(services)
    for name, svc in services.items():
        unknown = set(svc["environment"]) - known
        assert not unknown, (name, unknown)


def test_compose_ships_trace_export_off_with_its_setting_hinted() -> None:
    name = "OTEL_EXPORTER_OTLP_ENDPOINT"
    # Unset, nothing is exported.
    for service, svc in ptsp_gate_services().items():
        assert not set(OTLP_ENDPOINT_VARIABLES) & set(svc["environment"]), service
    # The hint is an endpoint the services accept once uncommented...
    hint = commented_setting(DEPLOY / "compose.yaml", name)
    check_endpoints({name: hint})
    # ...in the environment the two Kafka services share and the console does not.
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    (block,) = re.findall(r"^x-service-env:.*?\n(?=\S)", text, re.M | re.S)
    assert f"# {name}: {hint}" in block
    shared = compose()["x-service-env"]
    services = compose()["services"]
    for service in KAFKA_SERVICES:
        assert services[service]["environment"] == shared, service
    assert services[CONSOLE]["environment"] != shared


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
    assert {"POSTGRES_PASSWORD", "CONSOLE_DB_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} <= used
    # Interpolated from deploy/.env, never written in the compose file.
    services = compose()["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${")
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${")


def test_every_file_mounted_or_built_by_compose_is_in_the_repository() -> None:
    mounts = list(bind_mounts())
    assert mounts
    for service, source, _ in mounts:
        assert source.exists(), (service, source)
    builds = {name: svc["build"] for name, svc in compose()["services"].items() if "build" in svc}
    assert builds
    for build in builds.values():
        context = (DEPLOY / build["context"]).resolve()
        assert context == ROOT
        assert (context / build["dockerfile"]).is_file()
