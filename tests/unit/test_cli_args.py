"""Argument and configuration errors: a non-zero exit with one line, never a traceback."""

from __future__ import annotations

import pytest

from ptsp_gate.cli.main import main

from ..cli_helpers import usage_error


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nonsense"],
        ["flagged", "--region", "73"],
        ["flagged", "--region", "٧٣١٤"],
        ["flagged", "--reason", "NOT_A_CODE"],
        ["flagged", "--format", "xml"],
        ["employer"],
        ["employer", "123"],
        ["employer", "12345678901234"],
        ["run"],
        ["run", "permit-checker", "--port", "0"],
        ["run", "permit-checker", "--port", "http"],
        ["run", "permit-checker", "--workers", "0"],
        ["run", "enrolment-sync", "--workers", "65"],
        ["run", "enrolment-sync", "--workers", "two"],
        ["broker", "--brokers", "0"],
        ["broker", "--partitions", "1000"],
        ["broker", "--engine", "redpanda"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, capsys) -> None:
    usage_error(capsys, argv)


def test_services_need_their_connections(monkeypatch, capsys) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["run", "permit-checker"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "ptsp-gate run: KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL must be set "
        "(or use `ptsp-gate dev`)"
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PTSP_GATE_BATCH_MAX_RECORDS", "lots"),
        ("PTSP_GATE_BATCH_MAX_RECORDS", "0"),
        ("PTSP_GATE_MAX_EVENT_BYTES", "1"),
        ("PTSP_GATE_LOG_LEVEL", "LOUD"),
        # A dead-letter topic equal to its input would feed bad records back for ever.
        ("PTSP_GATE_DLQ_SUFFIX", ""),
        ("PTSP_GATE_TOPIC_DECISIONS", "ptsp.permit-applications.v1"),
        ("PTSP_GATE_TOPIC_ENROLMENT", "ptsp.permit-applications.v1"),
        ("PTSP_GATE_TOPIC_APPLICATIONS", "apps/v1"),
    ],
)
def test_bad_configuration_is_one_line(monkeypatch, capsys, name, value) -> None:
    monkeypatch.setenv(name, value)
    assert main(["flagged"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("ptsp-gate flagged: configuration")
    if "topic" not in err[0]:
        assert name in err[0]  # the variable, as the operator wrote it


def test_an_empty_policy_directory_means_the_packaged_policy(monkeypatch) -> None:
    from ptsp_gate.config import Settings

    monkeypatch.setenv("PTSP_GATE_POLICY_DIR", "")
    assert Settings().policy_dir is None


def test_a_database_error_under_any_command_is_one_line(monkeypatch, capsys) -> None:
    import asyncpg

    from ptsp_gate.cli import officer

    async def refused(args, settings):  # type: ignore[no-untyped-def]
        raise asyncpg.InsufficientPrivilegeError("permission denied for table compliance_decision")

    monkeypatch.setattr(officer, "flagged", refused)
    assert main(["flagged"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "ptsp-gate flagged: PostgreSQL: InsufficientPrivilegeError: "
        "permission denied for table compliance_decision"
    ]


def test_bad_policy_directory_is_one_line(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("PTSP_GATE_POLICY_DIR", str(tmp_path / "missing"))
    assert main(["run", "permit-checker"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "missing" in err[0]


@pytest.mark.parametrize("service", ["permit-checker", "enrolment-sync"])
def test_a_bad_otlp_endpoint_stops_a_service_in_one_line(monkeypatch, capsys, service) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")
    assert main(["run", service]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "ptsp-gate run: OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL with a host"
    ]


def test_unreachable_database_is_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert main(["flagged"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("ptsp-gate flagged: cannot connect to PostgreSQL")


def test_kafka_engine_without_an_installed_kafka_is_one_line(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("PTSP_GATE_KAFKA_HOME", str(tmp_path / "empty"))
    assert main(["broker", "--engine", "kafka"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("ptsp-gate broker: ")
    assert "Apache Kafka" in err[0]
