"""Docker cannot run here; check what can be checked of the deployment files."""

from pathlib import Path

import yaml

from ptsp_gate.config import Settings

DEPLOY = Path(__file__).parents[2] / "deploy"


def test_compose_parses_and_wires_the_services() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"kafka", "postgres", "migrate", "permit-checker", "enrolment-sync"} <= set(services)
    for name in ("permit-checker", "enrolment-sync"):
        svc = services[name]
        assert svc["command"][:2] == ["run", name]
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert set(svc["environment"]) >= {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"}


def test_compose_creates_every_default_topic() -> None:
    script = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["topics"]
    text = " ".join(script["command"])
    s = Settings()
    for topic in (
        s.topic_applications,
        s.topic_enrolment,
        s.topic_decisions,
        s.dlq_topic(s.topic_applications),
        s.dlq_topic(s.topic_enrolment),
    ):
        assert topic in text


def test_container_runs_as_non_root() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    assert "USER 10001" in text
    assert 'ENTRYPOINT ["ptsp-gate"]' in text
