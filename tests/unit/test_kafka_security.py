"""Kafka security settings reach both clients (the FastStream consumer and the outbox producer),
secrets come from the environment or files, and are never shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from ptsp_gate.adapters import kafka
from ptsp_gate.config import Settings

BASE = {"kafka_bootstrap_servers": ["127.0.0.1:9093"]}


def _producer_security(settings: Settings) -> dict[str, object]:
    client = kafka.make_producer(settings).client
    return {
        "protocol": client._security_protocol,
        "mechanism": client._sasl_mechanism,
        "username": client._sasl_plain_username,
        "password": client._sasl_plain_password,
        "ssl": client._ssl_context is not None,
    }


def _consumer_security(settings: Settings) -> dict[str, object]:
    from faststream.kafka.security import parse_security

    options = parse_security(kafka.security(settings))
    return {
        "protocol": options.get("security_protocol", "PLAINTEXT"),
        "mechanism": options.get("sasl_mechanism"),
        "username": options.get("sasl_plain_username"),
        "password": options.get("sasl_plain_password"),
        "ssl": options.get("ssl_context") is not None,
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_sasl_ssl_reaches_both_clients(mechanism: str) -> None:
    settings = Settings(
        **BASE,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="ptsp",
        kafka_sasl_password="s3cret",
    )
    expected = {
        "protocol": "SASL_SSL",
        "mechanism": mechanism,
        "username": "ptsp",
        "password": "s3cret",
        "ssl": True,
    }
    assert _producer_security(settings) == expected
    assert _consumer_security(settings) == expected
    kafka.make_broker(settings, CollectorRegistry())  # FastStream accepts the same object


async def test_password_from_a_file_wins_and_loses_its_newline(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    settings = Settings(
        **BASE,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="ptsp",
        kafka_sasl_password="from-env",
        kafka_sasl_password_file=secret,
    )
    assert _producer_security(settings)["password"] == "from-file"
    assert _producer_security(settings)["protocol"] == "SASL_PLAINTEXT"
    assert _producer_security(settings)["ssl"] is False


async def test_plaintext_is_the_default() -> None:
    assert kafka.security(Settings(**BASE)) is None
    assert _producer_security(Settings(**BASE))["protocol"] == "PLAINTEXT"


SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.mark.skipif(not SYSTEM_CA.is_file(), reason="no system CA bundle to load")
async def test_ssl_with_a_ca_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(SYSTEM_CA.read_bytes())
    settings = Settings(**BASE, kafka_security_protocol="SSL", kafka_ssl_cafile=ca)
    assert _producer_security(settings)["protocol"] == "SSL"
    assert _producer_security(settings)["ssl"] is True
    assert _consumer_security(settings)["ssl"] is True


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs PTSP_GATE_KAFKA_SASL_USERNAME"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/nonexistent/ca.pem"},
            "is not a readable file",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "/etc/hostname"},
            "needs PTSP_GATE_KAFKA_SSL_CERTFILE and _KEYFILE",
        ),
        (
            {
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_username": "u",
                "kafka_sasl_password_file": "/nonexistent/secret",
            },
            "cannot read kafka_sasl_password_file",
        ),
    ],
)
def test_unusable_settings_are_one_clear_error(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kafka.security(Settings(**BASE, **settings))


def test_secrets_never_show_in_settings_repr() -> None:
    settings = Settings(**BASE, kafka_sasl_password="s3cret", kafka_ssl_key_password="k3y")
    assert "s3cret" not in repr(settings)
    assert "k3y" not in repr(settings)
    assert "s3cret" not in str(settings.model_dump())


def test_the_service_command_reports_unusable_security_in_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ptsp_gate.cli.main", "run", "permit-checker"],
        env={
            "PATH": "/usr/bin:/bin",
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            "PTSP_GATE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "PTSP_GATE_KAFKA_SASL_USERNAME": "ptsp",
            "PTSP_GATE_KAFKA_SASL_PASSWORD": "s3cret-value",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("ptsp-gate run: ")
    assert "s3cret-value" not in proc.stderr + proc.stdout
