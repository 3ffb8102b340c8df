"""Trace context through the permit checker's and enrolment-sync's batches, against the in-memory
store: what each decision carries on, and, with spans recorded (an SDK with an in-memory
exporter in place of the OTLP one), that every record's spans are ended once, in its own trace."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ptsp_gate import demo
from ptsp_gate.contract.events import CE_TYPE_APPLICATION
from ptsp_gate.observability import tracing
from ptsp_gate.runtime.in_memory import InMemory
from ptsp_gate_enrolment_sync.sync import EnrolmentSync
from ptsp_gate_permit_checker.checker import PermitChecker

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


@pytest.fixture
def world() -> InMemory:
    return InMemory(now=NOW)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Spans recorded as with OTLP configured, without touching the process's global provider."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    monkeypatch.setattr(tracing._sdk, "recording", True)
    yield exporter
    provider.shutdown()


def _decisions(world: InMemory) -> dict[str, tuple[dict[str, Any], dict[str, bytes]]]:
    return {
        json.loads(r.value or b"{}")["application_id"]: (
            json.loads(r.value or b"{}"),
            dict(r.headers),
        )
        for r in world.state.outbox
        if r.kind == "decision"
    }


def _batch(world: InMemory) -> list[Any]:
    inbox = world.applications()
    traced = demo.application(1, now=NOW)
    plain = {**demo.application(2, now=NOW), "application_id": "PLAIN"}
    invalid = {**demo.application(3, now=NOW), "application_id": "BAD"}
    invalid["employer"]["nib"] = "1"
    key, headers, value = demo.application_record(traced)
    structured = {
        "specversion": "1.0",
        "id": "structured-1",
        "source": "urn:ptsp:7314",
        "type": CE_TYPE_APPLICATION,
        "traceparent": PARENT,
        "data": {**invalid, "application_id": "BAD-STRUCTURED"},
    }
    return [
        inbox.record(key, [*headers, ("traceparent", PARENT.encode())], value),
        inbox.record(*demo.application_record(plain)),
        inbox.record(
            b"1",
            [("content-type", b"application/cloudevents+json")],
            json.dumps(structured).encode(),
        ),
    ]


async def test_decisions_carry_their_records_context_without_an_exporter(world: InMemory) -> None:
    await PermitChecker(world.context()).handle_batch(_batch(world))
    decided = _decisions(world)
    first = decided[demo.application(1, now=NOW)["application_id"]][1]
    assert first["traceparent"] == first["ce_traceparent"] == PARENT.encode()
    assert "traceparent" not in decided["PLAIN"][1]
    # A structured event refused by the schema: its REJECTED answer keeps the trace.
    rejected, headers = decided["BAD-STRUCTURED"]
    assert rejected["outcome"] == "REJECTED"
    assert headers["traceparent"] == PARENT.encode()


async def test_recorded_spans_are_ended_once_each_in_its_records_trace(
    world: InMemory, recorded: InMemorySpanExporter
) -> None:
    await PermitChecker(world.context()).handle_batch(_batch(world))
    spans = recorded.get_finished_spans()
    consumes = [s for s in spans if s.name.endswith(" process")]
    assert len(consumes) == 3
    # Exported once each: ending a span twice would export it twice.
    assert len({s.context.span_id for s in spans}) == len(spans)
    traces = [format(s.context.trace_id, "032x") for s in consumes]
    # The two sent with a context are in its trace; the untraced one has a trace of its own,
    # not one shared with the batch's other records.
    assert traces.count(TRACE) == 2
    (own,) = set(traces) - {TRACE}
    traced = consumes[0]
    assert format(traced.context.trace_id, "032x") == TRACE
    assert format(traced.parent.span_id, "016x") == "00f067aa0ba902b7"
    children = {s.name for s in spans if s.parent and s.parent.span_id == traced.context.span_id}
    assert children == {"decide", "commit"}
    decided = _decisions(world)
    headers = decided[demo.application(1, now=NOW)["application_id"]][1]
    assert headers["traceparent"] == f"00-{TRACE}-{traced.context.span_id:016x}-01".encode()
    assert decided["PLAIN"][1]["traceparent"].decode().split("-")[1] == own


async def test_a_failed_batch_ends_its_spans_as_errors(
    world: InMemory, recorded: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ptsp_gate.stores.memory import MemoryStore

    async def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("database gone")

    monkeypatch.setattr(MemoryStore, "add_applications", broken)
    with pytest.raises(RuntimeError):
        await PermitChecker(world.context()).handle_batch(_batch(world))
    consumes = [s for s in recorded.get_finished_spans() if s.name.endswith(" process")]
    assert len(consumes) == 3
    assert all(not s.status.is_ok for s in consumes)


async def test_a_re_decision_carries_the_enrolment_records_trace(
    world: InMemory, recorded: InMemorySpanExporter
) -> None:
    inbox = world.applications()
    await PermitChecker(world.context()).handle_batch(
        [inbox.record(*demo.application_record(demo.application(5, now=NOW)))]
    )
    feed = world.enrolments()
    key, headers, value = demo.enrolment_record(demo.enrolment(5, now=NOW))
    await EnrolmentSync(world.context()).handle_batch(
        [feed.record(key, [*headers, ("ce_traceparent", PARENT.encode())], value)]
    )
    superseding = [dict(r.headers) for r in world.state.outbox if r.kind == "decision"][-1]
    assert superseding["traceparent"].decode().split("-")[1] == TRACE
