"""W3C trace context crosses the gate: from an application (plain `traceparent`, the CloudEvents
extension in binary or structured mode) or an enrolment record into the decisions it causes and
its dead letters. (With an OTLP endpoint configured, the gate's own spans join that trace:
test_client_examples.py.)"""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from ptsp_gate import demo
from ptsp_gate.contract.events import CE_TYPE_APPLICATION, DECISION_DATASCHEMA

from .conftest import eventually
from .support import header, read_topic, send, services

pytestmark = pytest.mark.integration


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def _with(record: tuple[bytes, list[tuple[str, bytes]], bytes], *extra: tuple[str, bytes]):
    key, headers, value = record
    return key, [*headers, *extra], value


def _by_application(records: list[Any]) -> dict[str, Any]:
    return {json.loads(r.value)["application_id"]: r for r in records}


async def test_trace_context_reaches_decisions_and_dead_letters(settings, producer) -> None:
    now = datetime.now(UTC)
    plain, plain_trace, _ = _traceparent()
    ce_only, ce_trace, _ = _traceparent()
    structured_parent, structured_trace, _ = _traceparent()
    invalid_parent, invalid_trace, _ = _traceparent()
    a, b, d, e, f, g, h, i = (demo.application(n, now=now) for n in range(1, 9))
    for app, name in zip((a, b, d, e, f, g, h, i), "ABDEFGHI", strict=True):
        app["application_id"] = f"TRACE-{name}"
    i["employer"]["nib"] = "1"  # invalid, in structured mode
    d["employer"]["nib"] = "123"  # invalid: REJECTED, and a dead letter
    structured = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "urn:ptsp:7314:oss",
        "type": CE_TYPE_APPLICATION,
        "time": now.isoformat(),
        "traceparent": structured_parent,
        "data": e,
    }
    other, _, _ = _traceparent()
    records = [
        _with(
            demo.application_record(a),
            ("traceparent", plain.encode()),
            ("tracestate", b"ptsp=7314"),
        ),
        _with(demo.application_record(b), ("ce_traceparent", ce_only.encode())),
        _with(demo.application_record(d), ("traceparent", invalid_parent.encode())),
        (
            e["employer"]["nib"].encode(),
            [("content-type", b"application/cloudevents+json")],
            json.dumps(structured).encode(),
        ),
        # Two traceparents that disagree: ambiguous, ignored; the event is decided all the same.
        _with(
            demo.application_record(f),
            ("traceparent", plain.encode()),
            ("traceparent", other.encode()),
        ),
        # Hostile values are ignored, never a reason to refuse the event.
        _with(
            demo.application_record(g),
            ("traceparent", b"\xff" * 40),
            ("ce_traceparent", b"00-" + b"0" * 32 + b"-" + b"1" * 16 + b"-01"),
        ),
        _with(
            demo.application_record(h),
            ("ce_traceparent", plain.encode()),
            ("ce_traceparent", other.encode()),
            ("ce_tracestate", b"\xc3\x28"),
        ),
        (
            i["employer"]["nib"].encode(),
            [("content-type", b"application/cloudevents+json")],
            json.dumps({**structured, "id": str(uuid.uuid4()), "data": i}).encode(),
        ),
    ]
    async with services(settings, "permit-checker"):
        await send(producer, settings.topic_applications, records)
        decided = _by_application(
            await read_topic(
                settings.kafka_bootstrap_servers, settings.topic_decisions, 8, distinct=header_id
            )
        )
        dead = await read_topic(
            settings.kafka_bootstrap_servers, settings.dlq_topic(settings.topic_applications), 2
        )
    assert set(decided) == {f"TRACE-{n}" for n in "ABDEFGHI"}
    for record in decided.values():
        assert header(record, "ce_dataschema") == DECISION_DATASCHEMA
    # Without an exporter the gate records no span of its own: the context goes on unchanged.
    assert header(decided["TRACE-A"], "traceparent") == plain
    assert header(decided["TRACE-A"], "ce_traceparent") == plain
    assert header(decided["TRACE-A"], "tracestate") == "ptsp=7314"
    assert header(decided["TRACE-B"], "traceparent") == ce_only
    assert plain_trace in plain
    assert ce_trace in ce_only
    assert header(decided["TRACE-E"], "traceparent") == structured_parent
    assert structured_trace in structured_parent
    rejected = decided["TRACE-D"]
    assert json.loads(rejected.value)["outcome"] == "REJECTED"
    assert header(rejected, "traceparent") == invalid_parent
    assert invalid_trace in invalid_parent
    # The dead letter keeps the sender's headers, its trace context among them.
    assert [header(r, "traceparent") for r in dead].count(invalid_parent) == 1
    # A structured event refused by the schema: its answer keeps the extension's trace.
    assert json.loads(decided["TRACE-I"].value)["outcome"] == "REJECTED"
    assert header(decided["TRACE-I"], "traceparent") == structured_parent
    for name in ("TRACE-F", "TRACE-G", "TRACE-H"):
        assert json.loads(decided[name].value)["outcome"] != "REJECTED"
        assert header(decided[name], "traceparent") is None
        assert header(decided[name], "ce_traceparent") is None


def header_id(record: Any) -> str:
    return str(json.loads(record.value)["application_id"])


async def test_a_re_decision_continues_the_enrolment_records_trace(settings, producer, db) -> None:
    now = datetime.now(UTC)
    app = demo.application(7, now=now)
    app["application_id"] = "TRACE-REDECIDE"
    enrolment_parent, enrolment_trace, _ = _traceparent()
    async with services(settings):
        await send(producer, settings.topic_applications, [demo.application_record(app)])
        await eventually(lambda: db.fetchval("SELECT count(*) = 1 FROM compliance_decision"))
        await send(
            producer,
            settings.topic_enrolment,
            [
                _with(
                    demo.enrolment_record(demo.enrolment(7, now=now)),
                    ("ce_traceparent", enrolment_parent.encode()),
                )
            ],
        )
        records = await read_topic(settings.kafka_bootstrap_servers, settings.topic_decisions, 2)
    first, second = sorted(records, key=lambda r: r.offset)
    assert json.loads(second.value)["supersedes"] == json.loads(first.value)["decision_id"]
    assert header(first, "traceparent") is None
    assert header(second, "traceparent") == enrolment_parent
    assert enrolment_trace in enrolment_parent
