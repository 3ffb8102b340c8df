"""The Apache Kafka launcher's installation rules, without starting a JVM."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptsp_gate.embedded import apache_kafka
from ptsp_gate.embedded.apache_kafka import cluster, installation


def test_the_cache_directory_is_overridable(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PTSP_GATE_KAFKA_HOME", str(tmp_path))
    assert apache_kafka.install_dir() == (
        tmp_path / f"kafka_{installation.SCALA_VERSION}-{apache_kafka.KAFKA_VERSION}"
    )
    assert not apache_kafka.installed()


def test_the_default_cache_is_under_the_home_directory(monkeypatch) -> None:
    monkeypatch.delenv("PTSP_GATE_KAFKA_HOME", raising=False)
    assert installation.cache_root() == Path.home() / ".cache" / "ptsp-gate"


def test_a_finished_install_is_not_repeated(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PTSP_GATE_KAFKA_HOME", str(tmp_path))
    libs = apache_kafka.install_dir() / "libs"
    libs.mkdir(parents=True)
    (libs / ".complete").write_text(apache_kafka.KAFKA_VERSION)
    # No Maven anywhere: a second run must not need it.
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    assert apache_kafka.install() == apache_kafka.install_dir()


def test_without_java_the_reason_is_one_line(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    why = apache_kafka.missing_prerequisite(for_install=True)
    assert why is not None
    assert "\n" not in why
    assert "Java 17" in why
    with pytest.raises(apache_kafka.ApacheKafkaError, match="Java"):
        apache_kafka.ApacheKafkaCluster(brokers=1)


def test_an_old_java_is_refused(monkeypatch, tmp_path) -> None:
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    assert installation.java_version() == 11
    why = apache_kafka.missing_prerequisite()
    assert why is not None
    assert "Java 11 found" in why


def test_setup_says_why_in_one_line_and_does_not_fail(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("PTSP_GATE_KAFKA_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert apache_kafka.main() == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("setup: Apache Kafka: no Java found")


def test_cluster_ids_never_look_like_an_option() -> None:
    ids = {cluster._cluster_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
