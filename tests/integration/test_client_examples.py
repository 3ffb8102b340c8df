"""The client examples under examples/ (Java with the CloudEvents SDK's Kafka binding; Node.js)
are built here and run against Apache Kafka and the gate's services as processes, as a licensing
office would run them. A trace the client starts continues through the gate and back: the gate's
spans, exported over OTLP to a collector in the test, hang in the client's trace, and the decision
carries the gate's span of the record on to the client."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ptsp_gate import demo
from ptsp_gate.contract.events import DECISION_DATASCHEMA
from ptsp_gate.embedded import harness

from .otlp_collector import Collector, ReceivedSpan, running_collector
from .support import header, read_topic, send, service_process

pytestmark = [pytest.mark.clients, pytest.mark.usefixtures("apache_cluster")]

ROOT = Path(__file__).resolve().parents[2]
JAVA = ROOT / "examples" / "java"
NODE = ROOT / "examples" / "node"
BUILD_TIMEOUT_S = 600


def _missing_or_fail(tools: tuple[str, ...]) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        why = f"the client examples need {', '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} under CI")
        pytest.skip(why)


def _build(argv: list[str], cwd: Path) -> None:
    done = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def java_client() -> list[str]:
    _missing_or_fail(("java", "mvn"))
    _build(["mvn", "-B", "-q", "package"], JAVA)
    return ["java", "-jar", str(JAVA / "target" / "ptsp-gate-client.jar")]


@pytest.fixture(scope="module")
def node_client() -> list[str]:
    _missing_or_fail(("node", "npm"))
    _build(["npm", "ci", "--no-audit", "--no-fund"], NODE)
    _build(["npm", "run", "build"], NODE)
    return ["node", str(NODE / "dist" / "client.js")]


@pytest.fixture
def collector() -> Iterator[Collector]:
    with running_collector() as running:
        yield running


@pytest.fixture
async def gate(settings, producer, collector):
    """The permit checker and enrolment-sync as processes, exporting spans to `collector`,
    with two employers known: one compliant, one two months behind on top of the tolerance."""
    now = datetime.now(UTC)
    await send(
        producer,
        settings.topic_enrolment,
        [
            demo.enrolment_record(demo.enrolment(1, now=now)),
            demo.enrolment_record(demo.enrolment(2, arrears=4, now=now)),
        ],
    )
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "PTSP_GATE_LOG_LEVEL": "INFO",
    }
    running = [
        service_process(settings, "enrolment-sync", env_extra=env),
        service_process(settings, "permit-checker", env_extra=env),
    ]
    try:
        await harness.wait_ready(running, 90)
        nibs = [demo.nib(1), demo.nib(2)]
        assert await harness.wait_for_enrolments(settings.dsn(), nibs, 1, timeout_s=30)
        yield running
    finally:
        harness.stop_all(running, 30)


def _client_env(settings) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(settings.kafka_bootstrap_servers),
        "PTSP_GATE_TOPIC_APPLICATIONS": settings.topic_applications,
        "PTSP_GATE_TOPIC_DECISIONS": settings.topic_decisions,
    }


async def _run(client: list[str], settings, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [*client, *args],
        env=_client_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _answer(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    answer: dict[str, Any] = json.loads(lines[0])
    return answer


def _application(tmp_path: Path, n: int, name: str, **changes: Any) -> Path:
    data = demo.application(n, now=datetime.now(UTC))
    data["application_id"] = name
    data["employer"].update(changes)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def _gate_spans(collector: Collector, settings, trace_id: str) -> dict[str, ReceivedSpan]:
    wanted = {
        f"{settings.topic_applications} process",
        "decide",
        "commit",
        f"{settings.topic_decisions} publish",
    }
    spans = collector.wait_for(lambda s: wanted <= {x.name for x in s}, trace_id)
    by_name = {s.name: s for s in spans}
    assert wanted <= set(by_name), sorted(by_name)
    return by_name


def _assert_trace_crosses_the_gate(
    collector: Collector, settings, answer: dict[str, Any], trace_id: str, client_span: str
) -> None:
    """The client's trace goes on in the gate, whose span of the record the decision names."""
    spans = _gate_spans(collector, settings, trace_id)
    consume = spans[f"{settings.topic_applications} process"]
    publish = spans[f"{settings.topic_decisions} publish"]
    assert consume.service == "ptsp-gate-permit-checker"
    assert consume.parent_span_id == client_span
    assert consume.links  # to FastStream's span of the whole batch
    assert spans["decide"].parent_span_id == consume.span_id
    assert spans["commit"].parent_span_id == consume.span_id
    assert publish.parent_span_id == consume.span_id
    assert answer["trace_id_sent"] == trace_id
    assert answer["traceparent_received"] == f"00-{trace_id}-{consume.span_id}-01"


async def test_the_java_client_gets_its_decisions_and_its_trace_back(
    gate, settings, collector, java_client, tmp_path
) -> None:
    parent, trace_id, client_span = _traceparent()
    cleared = _answer(
        await _run(
            java_client,
            settings,
            "--application",
            str(_application(tmp_path, 1, "JAVA-CLEARED")),
            "--traceparent",
            parent,
        )
    )
    assert cleared["application_id"] == "JAVA-CLEARED"
    assert cleared["outcome"] == "CLEARED"
    assert cleared["decision"]["outcome"] == "CLEARED"
    assert cleared["decision_ce_id"] == cleared["decision_id"]
    assert cleared["dataschema"] == DECISION_DATASCHEMA
    _assert_trace_crosses_the_gate(collector, settings, cleared, trace_id, client_span)
    # The decision's log line names the client's trace.
    await asyncio.sleep(0.5)
    lines = [json.loads(x) for x in gate[1].output().splitlines() if x.startswith("{")]
    assert any(
        x.get("event") == "decision"
        and x.get("application_id") == "JAVA-CLEARED"
        and x.get("trace_id") == trace_id
        for x in lines
    )

    # A NIB the gate refuses: the client checks presence and types only, the gate the rest.
    rejected = _answer(
        await _run(
            java_client,
            settings,
            "--application",
            str(_application(tmp_path, 2, "JAVA-REJECTED", nib="12345")),
        )
    )
    assert rejected["outcome"] == "REJECTED"
    assert rejected["reasons"] == ["INVALID_EVENT"]
    assert len(rejected["trace_id_sent"]) == 32
    assert rejected["traceparent_received"].split("-")[1] == rejected["trace_id_sent"]
    dead = await read_topic(
        settings.kafka_bootstrap_servers, settings.dlq_topic(settings.topic_applications), 1
    )
    assert header(dead[0], "ptsp-gate-error-code") == "SCHEMA_VIOLATION"
    assert header(dead[0], "ce_traceparent").split("-")[1] == rejected["trace_id_sent"]

    # Bad input never reaches Kafka: one line, exit 2.
    for args in (
        ["--application", str(tmp_path / "missing.json")],
        ["--application", str(_write(tmp_path / "not.json", "{not json"))],
        ["--application", str(_write(tmp_path / "empty.json", "{}"))],
        ["--bogus"],
    ):
        done = await _run(java_client, settings, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stdout == ""
        assert done.stderr.strip().splitlines()[-1].startswith("error:")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


async def test_the_node_client_gets_its_decisions_and_its_trace_back(
    gate, settings, collector, node_client, tmp_path
) -> None:
    parent, trace_id, client_span = _traceparent()
    app = _application(tmp_path, 2, "NODE-BLOCKED")
    blocked = _answer(
        await _run(
            node_client,
            settings,
            "--application",
            str(app),
            "--traceparent",
            parent,
            "--event-id",
            "node-event-1",
        )
    )
    assert blocked["outcome"] == "BLOCKED"
    assert "ARREARS" in blocked["reasons"]
    assert blocked["event_id"] == "node-event-1"
    assert blocked["dataschema"] == DECISION_DATASCHEMA
    assert blocked["supersedes"] is None
    _assert_trace_crosses_the_gate(collector, settings, blocked, trace_id, client_span)

    # The same event again (same ce_id, same bytes) is absorbed: no second decision.
    again = await _run(
        node_client,
        settings,
        "--application",
        str(app),
        "--event-id",
        "node-event-1",
        "--timeout",
        "4",
    )
    assert again.returncode == 1
    assert again.stderr.strip().splitlines()[-1].startswith("error:")
    assert "node-event-1" in again.stderr
    answers = await read_topic(
        settings.kafka_bootstrap_servers, settings.topic_decisions, 3, timeout=3
    )
    assert [header(r, "ce_subject") for r in answers].count("NODE-BLOCKED") == 1

    # Sent unchecked, a malformed application is answered REJECTED by the gate.
    rejected = _answer(
        await _run(
            node_client,
            settings,
            "--no-validate",
            "--application",
            str(_application(tmp_path, 3, "NODE-REJECTED", npwp="not-an-npwp")),
        )
    )
    assert rejected["outcome"] == "REJECTED"
    assert rejected["traceparent_received"].split("-")[1] == rejected["trace_id_sent"]

    for args in (
        ["--application", str(tmp_path / "missing.json")],
        ["--application", str(_write(tmp_path / "not.json", "[1, 2"))],
        ["--application", str(_application(tmp_path, 4, "NODE-BAD-NIB", nib="12345"))],
        [],
    ):
        done = await _run(node_client, settings, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stdout == ""
        assert done.stderr.strip().splitlines()[-1].startswith("error:")
