"""The metrics object's own behaviour (the exposition itself is checked live with promtool)."""

from prometheus_client import generate_latest

from ptsp_gate import __version__
from ptsp_gate.observability.metrics import Metrics


def _lines(m: Metrics, prefix: str) -> list[str]:
    text = generate_latest(m.exposition_registry()).decode()
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_lag_series_follow_the_assignment() -> None:
    m = Metrics()
    m.set_lag("g", {("t", 0): 5, ("t", 1): 0})
    assert len(_lines(m, "ptsp_gate_consumer_lag_messages{")) == 2
    # Partition 0 moved to another instance: its series goes, not frozen at its last value.
    m.set_lag("g", {("t", 1): 7})
    (line,) = _lines(m, "ptsp_gate_consumer_lag_messages{")
    assert 'partition="1"' in line
    assert line.endswith(" 7.0")


def test_each_metrics_object_has_its_own_series() -> None:
    first, second = Metrics(), Metrics()
    first.decisions.labels("CLEARED", "NEW").inc()
    assert _lines(first, "ptsp_gate_decisions_total{")
    assert not _lines(second, "ptsp_gate_decisions_total{")


def test_build_info_names_version_and_policy() -> None:
    m = Metrics()
    m.set_build("2025.1")
    (line,) = _lines(m, "ptsp_gate_build_info{")
    assert f'version="{__version__}"' in line
    assert 'policy_version="2025.1"' in line


def test_projection_gauges_only_where_the_projection_is_read() -> None:
    m = Metrics()
    assert not _lines(m, "ptsp_gate_enrolment_newest_as_of_timestamp_seconds")
    m.expose_enrolment_projection()
    m.expose_enrolment_projection()  # idempotent
    assert _lines(m, "ptsp_gate_enrolment_newest_as_of_timestamp_seconds")


def test_a_worker_that_cannot_start_exits_as_a_startup_failure(monkeypatch) -> None:
    # Any other exit code would have the worker supervisor restart it for ever.
    import pytest
    from uvicorn.config import STARTUP_FAILURE

    from ptsp_gate.runtime import supervisor

    monkeypatch.setenv(supervisor.SERVICE_ENV, "no-such-service")
    with pytest.raises(SystemExit) as exc:
        supervisor.create_app()
    assert exc.value.code == STARTUP_FAILURE
