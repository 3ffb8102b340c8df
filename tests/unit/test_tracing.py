"""Trace context in and out of records (observability/tracing.py): which context an event's
headers give, what a decision carries on, when spans are exported; and that no header, however
hostile, makes reading it raise."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from ptsp_gate.contract.cloudevents import decode
from ptsp_gate.observability import tracing

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
PARENT = f"00-{TRACE}-{SPAN}-01"
OTHER = "00-11111111111111111111111111111111-2222222222222222-01"


def _ids(headers: list[tuple[str, bytes | None]], *extension: str | None) -> tuple[str, str]:
    ctx = trace.get_current_span(tracing.incoming(headers, *extension)).get_span_context()
    if not ctx.is_valid:
        return ("", "")
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


@pytest.mark.parametrize(
    ("headers", "extension", "expected"),
    [
        ([("traceparent", PARENT.encode())], (), (TRACE, SPAN)),
        ([("TraceParent", PARENT.encode())], (), (TRACE, SPAN)),
        ([("ce_traceparent", PARENT.encode())], (), (TRACE, SPAN)),
        # The plain header names the last hop: it wins over the extension.
        ([("ce_traceparent", OTHER.encode()), ("traceparent", PARENT.encode())], (), (TRACE, SPAN)),
        # A structured event's extension attribute, when there is no plain header.
        ([], (PARENT, None), (TRACE, SPAN)),
        ([("traceparent", PARENT.encode())], (OTHER, None), (TRACE, SPAN)),
        # The same value twice is one context; two different ones are ambiguous.
        ([("traceparent", PARENT.encode()), ("traceparent", PARENT.encode())], (), (TRACE, SPAN)),
        ([("traceparent", PARENT.encode()), ("traceparent", OTHER.encode())], (), ("", "")),
        # Malformed, hostile or missing.
        ([], (), ("", "")),
        ([("traceparent", b"")], (), ("", "")),
        ([("traceparent", None)], (), ("", "")),
        ([("traceparent", b"not a traceparent")], (), ("", "")),
        ([("traceparent", f"00-{'0' * 32}-{SPAN}-01".encode())], (), ("", "")),
        ([("traceparent", f"00-{TRACE}-{'0' * 16}-01".encode())], (), ("", "")),
        ([("traceparent", f"ff-{TRACE}-{SPAN}-01".encode())], (), ("", "")),
        ([("traceparent", f"00-{TRACE}-{SPAN}-01-extra".encode())], (), ("", "")),
        ([("traceparent", PARENT.upper().encode())], (), ("", "")),
        ([("traceparent", "00-ü".encode())], (), ("", "")),
        ([("traceparent", b"\xff\xfe" * 30)], (), ("", "")),
        ([("traceparent", (PARENT + " " * 600).encode())], (), ("", "")),
        ([], ("x" * 10_000, None), ("", "")),
        # A later version may append fields.
        ([("traceparent", f"01-{TRACE}-{SPAN}-01-future".encode())], (), (TRACE, SPAN)),
    ],
)
def test_the_context_an_event_carries(
    headers: list[tuple[str, bytes | None]], extension: tuple[str | None, ...], expected: Any
) -> None:
    assert _ids(headers, *extension) == expected


def _state(headers: list[tuple[str, bytes | None]]) -> str:
    ctx = trace.get_current_span(tracing.incoming(headers)).get_span_context()
    return ctx.trace_state.to_header()


def test_tracestate_goes_with_its_traceparent() -> None:
    assert _state([("traceparent", PARENT.encode()), ("tracestate", b"ptsp=7314")]) == "ptsp=7314"
    # The extension's state belongs to the extension's parent, not to a plain header's.
    headers = [("traceparent", PARENT.encode()), ("ce_tracestate", b"ptsp=7314")]
    assert _state(headers) == ""
    state = [
        ("ce_traceparent", PARENT.encode()),
        ("ce_tracestate", b"a=1"),
        ("ce_tracestate", b"b=2"),
    ]
    assert _state(state) == "a=1,b=2"
    # An oversized or garbled state is dropped; the parent stays.
    for bad in (b"a=" + b"x" * 600, b"\xff=1", b"not a state"):
        headers = [("traceparent", PARENT.encode()), ("tracestate", bad)]
        assert _ids(headers) == (TRACE, SPAN)
        assert _state(headers) == ""


def _span(trace_id: str = TRACE, span_id: str = SPAN, state: str = "") -> NonRecordingSpan:
    return NonRecordingSpan(
        SpanContext(
            int(trace_id, 16),
            int(span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(1),
            trace_state=TraceState.from_header([state]) if state else TraceState(),
        )
    )


def test_a_decision_carries_the_context_plain_and_as_the_cloudevents_extension() -> None:
    assert tracing.outgoing(_span()) == [
        ("traceparent", PARENT.encode()),
        ("ce_traceparent", PARENT.encode()),
    ]
    assert tracing.outgoing(_span(state="ptsp=7314")) == [
        ("traceparent", PARENT.encode()),
        ("tracestate", b"ptsp=7314"),
        ("ce_traceparent", PARENT.encode()),
        ("ce_tracestate", b"ptsp=7314"),
    ]
    assert tracing.outgoing(trace.INVALID_SPAN) == []


def test_without_an_exporter_a_records_span_keeps_the_senders_context() -> None:
    """No SDK is installed in the unit tests, as in a service without OTLP configured."""

    record = SimpleNamespace(
        topic="t", partition=0, offset=1, headers=[("traceparent", PARENT.encode())]
    )
    span = tracing.consume_span(record)
    assert not span.is_recording()
    assert tracing.outgoing(span)[0] == ("traceparent", PARENT.encode())
    record.headers = []
    assert tracing.outgoing(tracing.consume_span(record)) == []


def test_the_extension_is_read_from_both_content_modes() -> None:
    binary = decode(
        [
            ("ce_specversion", b"1.0"),
            ("ce_id", b"1"),
            ("ce_source", b"s"),
            ("ce_type", b"t"),
            ("ce_traceparent", PARENT.encode()),
            ("ce_tracestate", b"a=1"),
        ],
        b"{}",
    )
    assert (binary.traceparent, binary.tracestate) == (PARENT, "a=1")
    structured = decode(
        [("content-type", b"application/cloudevents+json")],
        b'{"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data": {},'
        b' "traceparent": "' + PARENT.encode() + b'", "tracestate": 5}',
    )
    assert (structured.traceparent, structured.tracestate) == (PARENT, None)


@pytest.mark.parametrize(
    ("env", "configured"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://c:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
    ],
)
def test_spans_are_exported_only_when_an_endpoint_is_set(
    env: dict[str, str], configured: bool
) -> None:
    assert tracing.export_configured(env) is configured


@pytest.mark.parametrize(
    "endpoint",
    [
        "collector:4318",
        "ftp://collector",
        "http://",
        "http://:4318",
        "http://collector:99999",
        "http://collector:port",
        "http://user:secret@[::1",
    ],
)
def test_a_malformed_endpoint_is_refused_in_one_line_without_its_value(endpoint: str) -> None:
    for name in tracing.OTLP_ENDPOINT_VARIABLES:
        with pytest.raises(ValueError, match=f"^{name} ") as info:
            tracing.check_endpoints({name: endpoint})
        # The same line whatever the value: it may hold credentials.
        assert str(info.value) == f"{name} must be an http:// or https:// URL with a host"


def test_good_endpoints_pass() -> None:
    tracing.check_endpoints({})
    tracing.check_endpoints({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    tracing.check_endpoints({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://c.example/v1/traces"})


def test_nothing_is_installed_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in tracing.OTLP_ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    installed: list[Any] = []
    monkeypatch.setattr(trace, "set_tracer_provider", installed.append)
    assert tracing.configure("permit-checker") is None
    assert installed == []


def test_an_endpoint_installs_an_exporting_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    installed: list[Any] = []
    monkeypatch.setattr(trace, "set_tracer_provider", installed.append)
    provider = tracing.configure("permit-checker")
    try:
        assert installed == [provider]
        assert provider.resource.attributes["service.name"] == "ptsp-gate-permit-checker"
    finally:
        tracing.shutdown(provider)


def test_the_standard_variables_name_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gate-7314")
    monkeypatch.setattr(trace, "set_tracer_provider", lambda _: None)
    provider = tracing.configure("permit-checker")
    try:
        assert provider.resource.attributes["service.name"] == "gate-7314"
    finally:
        tracing.shutdown(provider)


def test_a_garbled_trace_attribute_never_refuses_the_event() -> None:
    base = [("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"s"), ("ce_type", b"t")]
    event = decode([*base, ("ce_traceparent", b"\xff\xfe"), ("ce_tracestate", b"\xc3")], b"{}")
    assert event.id == "1"
    assert event.traceparent is None
    assert event.tracestate is None


def test_two_different_extension_values_are_ignored_in_binary_mode() -> None:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"1"),
        ("ce_source", b"s"),
        ("ce_type", b"t"),
        ("ce_traceparent", PARENT.encode()),
        ("ce_traceparent", OTHER.encode()),
    ]
    event = decode(headers, b"{}")
    record = SimpleNamespace(topic="t", partition=0, offset=1, headers=headers)
    assert tracing.outgoing(tracing.consume_span(record, event)) == []


def test_log_lines_name_the_current_trace() -> None:
    span = _span()
    with trace.use_span(span):
        line = tracing.add_trace_ids(None, "info", {"event": "x"})
        assert line["trace_id"] == TRACE
        assert line["span_id"] == SPAN
        # A line about another record keeps the ids it names.
        named = tracing.add_trace_ids(None, "info", {"event": "x", "trace_id": "t"})
        assert named["trace_id"] == "t"
    assert "trace_id" not in tracing.add_trace_ids(None, "info", {"event": "x"})
    assert tracing.log_fields(span) == {"trace_id": TRACE, "span_id": SPAN}
    assert tracing.log_fields(trace.INVALID_SPAN) == {}


_header_names = st.sampled_from(
    ["traceparent", "tracestate", "ce_traceparent", "ce_tracestate", "TRACEPARENT", "x"]
)
_values = st.one_of(
    st.none(),
    st.binary(max_size=80),
    st.builds(lambda s: s.encode(), st.text(max_size=80)),
    st.sampled_from([PARENT.encode(), OTHER.encode(), b"a=1,b=2"]),
)


@given(
    st.lists(st.tuples(_header_names, _values), max_size=8),
    st.one_of(st.none(), st.text(max_size=100)),
    st.one_of(st.none(), st.text(max_size=100)),
)
def test_no_header_makes_reading_the_context_raise(
    headers: list[tuple[str, bytes | None]], parent: str | None, state: str | None
) -> None:
    ctx = tracing.incoming(headers, parent, state)
    out = tracing.outgoing(trace.get_current_span(ctx))
    assert len(out) in (0, 2, 4)
    for _, value in out:
        value.decode("ascii")
