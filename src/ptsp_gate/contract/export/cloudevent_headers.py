"""The CloudEvents binary-mode headers of each event type, as JSON Schema for the AsyncAPI
document: inbound events as the gate reads them, the decision as it writes it."""

from __future__ import annotations

from ptsp_gate.contract.cloudevents import (
    BINARY_HEADERS,
    JSON_CONTENT_TYPE,
    MAX_ATTRIBUTE_CHARS,
    SPECVERSION,
    STRUCTURED_CONTENT_TYPE,
)
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
            "the record unusable. Other headers (e.g. tracing) may be present."
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
    if not inbound:
        headers["required"].append("ce_subject")
        headers["properties"]["ce_subject"] = {
            "type": "string",
            "minLength": 1,
            "description": "The payload's `application_id`.",
        }
    return headers
