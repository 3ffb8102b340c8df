"""Trace context in and out of Kafka records, and the gate's spans, with OpenTelemetry.

An event may carry W3C Trace Context as the plain `traceparent`/`tracestate` headers (what an
OpenTelemetry-instrumented producer writes) or as the CloudEvents distributed-tracing extension
(`ce_traceparent`/`ce_tracestate` in binary mode, attributes in structured mode). The plain
header wins: it names the last hop, the extension the event's origin. A decision carries the
context on, in both forms.

Without an OTLP endpoint the OpenTelemetry API stays a no-op (`configure` installs nothing):
no span is recorded or exported, yet a context that arrives with an event still leaves with the
decisions it causes, since a span that is not recorded keeps its parent's context. With one,
each record gets its spans in the sender's trace (or a trace of its own): consume, decide,
commit; the relay adds publish. A decision carries its record's consume span: the relay does not
rewrite what it publishes, so a republished row is byte-identical to the first copy.

Trace context is advisory: a malformed, oversized, duplicated or non-UTF-8 one is ignored, never
a reason to refuse the event.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind

# Re-exported: the services name spans through this module, not OpenTelemetry.
from opentelemetry.trace import Span as Span  # noqa: PLC0414
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ptsp_gate.contract.cloudevents import (
    CE_TRACEPARENT,
    CE_TRACESTATE,
    MAX_TRACE_HEADER_CHARS,
    TRACEPARENT,
    TRACESTATE,
    CloudEvent,
)

TRACE_HEADERS = frozenset({TRACEPARENT, TRACESTATE, CE_TRACEPARENT, CE_TRACESTATE})

# The standard OpenTelemetry variables that turn export on (the SDK reads the rest itself:
# headers, protocol details, sampler, resource attributes).
OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

Headers = Sequence[tuple[str, bytes | None]]
OutHeaders = list[tuple[str, bytes]]

_PROPAGATOR = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("ptsp_gate")


class _Sdk:
    # Whether `configure` installed an exporting SDK. Without one, a record's spans are built
    # directly as non-recording spans: the API's no-op path costs more per record than the
    # decision's own bookkeeping, for nothing.
    recording = False


_sdk = _Sdk()


def export_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether spans are to be exported: an OTLP endpoint is set and the SDK is not disabled."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(name, "").strip() for name in OTLP_ENDPOINT_VARIABLES)


def check_endpoints(environ: Mapping[str, str] | None = None) -> None:
    """Refuse an OTLP endpoint that is not an http(s) URL, in one line that does not repeat it
    (it may hold credentials)."""
    env = os.environ if environ is None else environ
    for name in OTLP_ENDPOINT_VARIABLES:
        value = env.get(name, "").strip()
        if not value:
            continue
        try:
            url = urlsplit(value)
            port_ok = url.port is None or url.port > 0
        except ValueError:
            port_ok = False
            url = urlsplit("")
        if url.scheme not in ("http", "https") or not url.hostname or not port_ok:
            raise ValueError(f"{name} must be an http:// or https:// URL with a host")


def configure(service: str) -> Any:
    """Install the OpenTelemetry SDK with an OTLP/HTTP exporter when one is configured; the
    provider (to shut down at exit), or None when nothing is exported."""
    if not export_configured():
        return None
    check_endpoints()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) names the service when
    # set; the SDK's own fallback, "unknown_service", is replaced by this service's name.
    named = str(Resource.create().attributes.get(SERVICE_NAME, ""))
    if not named or named.startswith("unknown_service"):
        named = f"ptsp-gate-{service}"
    resource = Resource.create({SERVICE_NAME: named})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _sdk.recording = True
    return provider


def shutdown(provider: Any) -> None:
    """Export what is buffered, then stop (at a service's end)."""
    if provider is not None:
        provider.shutdown()
        _sdk.recording = False


def _text(raw: bytes | None) -> str | None:
    # Checked here rather than by the propagator, which would log a warning per hostile record.
    if not raw or len(raw) > MAX_TRACE_HEADER_CHARS:
        return None
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return None


def incoming(
    headers: Headers, traceparent: str | None = None, tracestate: str | None = None
) -> Context:
    """The context a record carries: its plain headers first, else the CloudEvents extension
    (`traceparent`/`tracestate` as decoded from a structured event, else the ce_ headers). An
    empty context when there is none, or none that can be trusted: two different traceparents
    under one name are ambiguous and both ignored."""
    found: dict[str, list[str | None]] = {}
    for name, raw in headers:
        key = name.lower()
        if key in TRACE_HEADERS:
            found.setdefault(key, []).append(_text(raw))
    if TRACEPARENT in found:
        parent, state = found[TRACEPARENT], found.get(TRACESTATE)
    elif traceparent is not None:
        parent = [traceparent if len(traceparent) <= MAX_TRACE_HEADER_CHARS else None]
        state = [tracestate] if tracestate and len(tracestate) <= MAX_TRACE_HEADER_CHARS else None
    elif CE_TRACEPARENT in found:
        parent, state = found[CE_TRACEPARENT], found.get(CE_TRACESTATE)
    else:
        return Context()
    if len(set(parent)) != 1 or parent[0] is None:
        return Context()
    carrier = {TRACEPARENT: parent[0]}
    if state and None not in state:
        carrier[TRACESTATE] = ",".join(s for s in state if s)
    return _PROPAGATOR.extract(carrier)


def outgoing(span: Span) -> OutHeaders:
    """The headers that carry `span`'s context on: plain and CloudEvents extension alike, so
    both an instrumented Kafka consumer and a CloudEvents SDK see it. None for no context."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    parent = carrier.get(TRACEPARENT)
    if parent is None:
        return []
    out: OutHeaders = [(TRACEPARENT, parent.encode())]
    state = carrier.get(TRACESTATE)
    if state:
        out.append((TRACESTATE, state.encode()))
    out.append((CE_TRACEPARENT, parent.encode()))
    if state:
        out.append((CE_TRACESTATE, state.encode()))
    return out


def current_headers() -> OutHeaders:
    """The headers carrying the current context (a sweep's or a batch's span), if any."""
    return outgoing(trace.get_current_span())


def log_fields(span: Span) -> dict[str, str]:
    """`trace_id` and `span_id` for a log line about the work `span` covers."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


def log_fields_of(headers: Headers) -> dict[str, str]:
    """`trace_id` and `span_id` for a log line about what these headers carry on."""
    return log_fields(trace.get_current_span(incoming(headers)))


def add_trace_ids(_logger: Any, _name: str, event: Any) -> Any:
    """structlog processor: the current span's ids on every line that has one and names none."""
    if "trace_id" not in event:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            event["trace_id"] = format(ctx.trace_id, "032x")
            event["span_id"] = format(ctx.span_id, "016x")
    return event


def _messaging(topic: str, operation: str) -> dict[str, str]:
    return {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.operation.type": operation,
    }


def consume_span(record: Any, event: CloudEvent | None = None) -> Span:
    """A record's consume span: in the trace its headers name (or, in structured mode, its
    CloudEvent's attributes), else the first of a trace of its own; linked to the batch's span
    (FastStream's) either way. Never under the batch's span: records of one batch come from
    unrelated senders, whose traces must not merge."""
    structured = event is not None and event.structured
    parent = incoming(
        record.headers,
        event.traceparent if structured and event is not None else None,
        event.tracestate if structured and event is not None else None,
    )
    if not _sdk.recording:
        return trace.get_current_span(parent)
    batch = trace.get_current_span().get_span_context()
    attributes: dict[str, Any] = {
        **_messaging(record.topic, "process"),
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
    }
    return _tracer.start_span(
        f"{record.topic} process",
        context=parent,
        kind=SpanKind.CONSUMER,
        links=[Link(batch)] if batch.is_valid else None,
        attributes=attributes,
    )


@contextmanager
def child(parent: Span, name: str) -> Iterator[Span]:
    """An internal span under `parent`, current while the block runs."""
    if not parent.is_recording():
        yield parent
        return
    ctx = trace.set_span_in_context(parent)
    with _tracer.start_as_current_span(name, context=ctx) as span:
        yield span


def committed(spans: Iterable[Span], started_ns: int) -> None:
    """A `commit` span under each record's span, covering the transaction that stored what it
    produced (from `started_ns` to now), then the records' spans end."""
    now = time.time_ns()
    for span in spans:
        if span.is_recording():
            commit = _tracer.start_span(
                "commit", context=trace.set_span_in_context(span), start_time=started_ns
            )
            commit.end(end_time=now)
            span.end(end_time=now)


def failed(spans: Iterable[Span], error: BaseException) -> None:
    """End the records' spans of a batch that was not committed (it is retried)."""
    for span in spans:
        if span.is_recording():
            span.record_exception(error)
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
            span.end()


def publish_span(topic: str, headers: Sequence[tuple[str, bytes]]) -> Span:
    """The relay's span for one record, under the context the outbox row carries."""
    if not _sdk.recording:
        return trace.INVALID_SPAN
    return _tracer.start_span(
        f"{topic} publish",
        context=incoming(headers),
        kind=SpanKind.PRODUCER,
        attributes=_messaging(topic, "send"),
    )


def end_when_done(span: Span, future: asyncio.Future[Any]) -> None:
    """End `span` when the broker has answered for its record (or refused it)."""
    if not span.is_recording():
        return

    def done(f: asyncio.Future[Any]) -> None:
        if f.cancelled():
            failed([span], asyncio.CancelledError())
        elif (error := f.exception()) is not None:
            failed([span], error)
        else:
            span.end()

    future.add_done_callback(done)
