"""The CloudEvents binary-mode headers of each event type, as JSON Schema for the AsyncAPI
document: inbound events as the gate reads them, the decision as it writes it."""

from __future__ import annotations

from ptsp_gate.contract.cloudevents import (
    BINARY_HEADERS,
    CE_TRACEPARENT,
    CE_TRACESTATE,
    JSON_CONTENT_TYPE,
    MAX_ATTRIBUTE_CHARS,
    MAX_TRACE_HEADER_CHARS,
    SPECVERSION,
    STRUCTURED_CONTENT_TYPE,
    TRACEPARENT,
    TRACEPARENT_PATTERN,
    TRACESTATE,
)
from ptsp_gate.contract.events import DECISION_DATASCHEMA
from ptsp_gate.contract.export.json_schema import JsonObject


def ce_headers(ce_type: str, *, inbound: bool) -> JsonObject:
    id_text = (
        "Event id, unique per ce_source. The idempotency key of an input event: an event whose "
        "id was already processed is not processed again (redeliveries and resends are safe)."
        if inbound
        else "Event id: the payload's `decision_id`."
    )
    time_text = (
        "When the event occurred: RFC 3339 timestamp with a UTC offset."
        if inbound
        else "The payload's `decided_at`: RFC 3339 timestamp with a UTC offset."
    )
    content_type_text = (
        f"{JSON_CONTENT_TYPE}: binary content mode, the record value is the JSON `data`. A record "
        f"whose content-type is {STRUCTURED_CONTENT_TYPE} is read in structured mode instead: "
        "the value is the whole CloudEvent as JSON with the payload in `data` (data_base64 is "
        "refused) and the ce_* headers are not used."
        if inbound
        else f"{JSON_CONTENT_TYPE}: binary content mode, the record value is the JSON `data`."
    )
    headers: JsonObject = {
        "type": "object",
        "description": (
            "CloudEvents 1.0 attributes in Kafka headers (Kafka protocol binding, binary content "
            "mode). Header values are UTF-8 text; ce_* attributes that are not valid UTF-8 make "
            "the record unusable. Other headers may be present."
        ),
        "required": list(BINARY_HEADERS),
        "properties": {
            "ce_specversion": {
                "type": "string",
                "const": SPECVERSION,
                "description": "CloudEvents specification version.",
            },
            "ce_id": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_ATTRIBUTE_CHARS,
                "description": id_text,
            },
            "ce_source": {
                "type": "string",
                "format": "uri-reference",
                "minLength": 1,
                "maxLength": MAX_ATTRIBUTE_CHARS,
                "description": "URI-reference identifying the system that produced the event.",
            },
            "ce_type": {
                "type": "string",
                "const": ce_type,
                "description": "CloudEvents event type.",
            },
            "ce_time": {
                "type": "string",
                "format": "date-time",
                "description": time_text,
            },
            "content-type": {
                "type": "string",
                "const": JSON_CONTENT_TYPE,
                "description": content_type_text,
            },
        },
    }
    headers["properties"].update(trace_headers(inbound=inbound))
    if not inbound:
        # Not required: decisions published before it was added lack it.
        headers["required"].append("ce_subject")
        headers["properties"]["ce_subject"] = {
            "type": "string",
            "minLength": 1,
            "description": "The payload's `application_id`.",
        }
        headers["properties"]["ce_dataschema"] = {
            "type": "string",
            "const": DECISION_DATASCHEMA,
            "description": (
                "The payload's JSON Schema: the `$id` of "
                "schemas/compliance-decision.v1.schema.json. On every decision since this header "
                "was added to v1."
            ),
        }
    return headers


def trace_headers(*, inbound: bool) -> JsonObject:
    """W3C Trace Context, plain and as the CloudEvents distributed-tracing extension."""
    if inbound:
        parent = (
            "W3C traceparent of the producer's span (optional). The gate's spans and the "
            "decisions this event causes continue this trace. Preferred over ce_traceparent when "
            "both are present; a malformed, duplicated or oversized value is ignored, never a "
            "reason to refuse the event."
        )
        ce_parent = (
            "The CloudEvents distributed-tracing extension (optional): read when no plain "
            "traceparent header is present. In structured mode, the `traceparent` attribute."
        )
    else:
        parent = (
            "W3C traceparent continuing the trace of the event that caused this decision (the "
            "application's, or for a re-decision the enrolment record's); absent when that event "
            "carried none and the gate exports no traces."
        )
        ce_parent = "The same value as traceparent (CloudEvents distributed-tracing extension)."
    trace_parent = {"type": "string", "pattern": TRACEPARENT_PATTERN}
    trace_state = {"type": "string", "maxLength": MAX_TRACE_HEADER_CHARS}
    return {
        TRACEPARENT: {**trace_parent, "description": parent},
        TRACESTATE: {**trace_state, "description": "W3C tracestate, with traceparent."},
        CE_TRACEPARENT: {**trace_parent, "description": ce_parent},
        CE_TRACESTATE: {**trace_state, "description": "W3C tracestate, with ce_traceparent."},
    }
