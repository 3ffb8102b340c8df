"""CloudEvents 1.0 over Kafka (protocol binding): decoding inbound records, encoding outbound ones.

Binary content mode is the contract's default (attributes in `ce_*` headers, value = JSON data);
structured mode (`content-type: application/cloudevents+json`, the whole event as JSON) is accepted
on input. Everything here is pure: records in, values or `EnvelopeError` out.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ptsp_gate.contract import json_limits

SPECVERSION = "1.0"
JSON_CONTENT_TYPE = "application/json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
# The headers of a binary-mode event, in the order `binary_headers` writes them (ce_subject and
# ce_dataschema, when the event has them, come last).
BINARY_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type")
# The longest id, source or type an event may carry; the published header schemas say the same.
MAX_ATTRIBUTE_CHARS = 256

# W3C Trace Context headers: plain, and as the CloudEvents distributed-tracing extension.
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
CE_TRACEPARENT = "ce_traceparent"
CE_TRACESTATE = "ce_tracestate"
# Version 00 has exactly these fields; a later version may append more after another "-".
TRACEPARENT_PATTERN = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$"
# Longer trace headers are ignored: traceparent is 55 characters in version 00, and W3C asks no
# one to keep more than 512 characters of tracestate.
MAX_TRACE_HEADER_CHARS = 512

Headers = list[tuple[str, bytes]]


class EnvelopeError(ValueError):
    """The record is not a usable CloudEvent. `code` is stable (DLQ header, metric label)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class CloudEvent:
    id: str
    source: str
    type: str
    time: datetime | None
    data: Any
    structured: bool = False
    # The distributed-tracing extension (W3C trace context as CloudEvents attributes):
    # `ce_traceparent`/`ce_tracestate` in binary mode, top-level attributes in structured mode.
    # Unchecked here: a malformed one is ignored by the tracing layer, never refused.
    traceparent: str | None = None
    tracestate: str | None = None


def _parse_time(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise EnvelopeError("MALFORMED_ENVELOPE", f"ce time is not RFC 3339: {raw[:64]!r}") from exc
    if value.tzinfo is None:
        raise EnvelopeError("MALFORMED_ENVELOPE", "ce time has no UTC offset")
    return value


def _required(attrs: dict[str, Any], name: str) -> str:
    value = attrs.get(name)
    if not isinstance(value, str) or not value.strip():
        raise EnvelopeError("MALFORMED_ENVELOPE", f"CloudEvents attribute '{name}' is missing")
    if len(value) > MAX_ATTRIBUTE_CHARS:
        raise EnvelopeError("MALFORMED_ENVELOPE", f"CloudEvents attribute '{name}' is too long")
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL, and the id is stored: such a record would be refused
        # by the database on every retry of its batch.
        raise EnvelopeError("MALFORMED_ENVELOPE", f"CloudEvents attribute '{name}' contains NUL")
    return value


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _json(value: bytes) -> Any:
    try:
        return json_limits.loads(value)
    except json_limits.JsonLimitError as exc:
        raise EnvelopeError("SCHEMA_VIOLATION", f"value refused: {exc}") from exc
    except ValueError as exc:  # not UTF-8, or not JSON
        raise EnvelopeError("MALFORMED_JSON", f"value is not UTF-8 JSON: {exc}") from exc


def decode(
    headers: Sequence[tuple[str, bytes]], value: bytes | None, *, parse_data: bool = True
) -> CloudEvent:
    """Decode one Kafka record into a CloudEvent whose `data` is parsed JSON.

    With `parse_data=False`, a binary-mode value is left unparsed (`data` is None): a caller that
    validates the raw bytes itself (pydantic's JSON mode) saves a second parse.
    """
    # One pass over the headers: this runs for every record.
    attrs: dict[str, Any] = {}
    content_type = ""
    bad_attribute: str | None = None
    for name, raw in headers:
        key = name.lower()
        if key.startswith("ce_"):
            try:
                attrs[key[3:]] = raw.decode("utf-8") if raw is not None else ""
            except UnicodeDecodeError:
                # Trace context is advisory: a garbled one is dropped, never a reason to refuse.
                if key not in (CE_TRACEPARENT, CE_TRACESTATE):
                    bad_attribute = bad_attribute or name
        elif key == "content-type" and raw is not None:
            content_type = raw.decode("utf-8", "replace").split(";")[0].strip().lower()
    if value is None:
        raise EnvelopeError("MALFORMED_ENVELOPE", "record has no value (tombstone)")
    if content_type == STRUCTURED_CONTENT_TYPE:
        envelope = _json(value)
        if not isinstance(envelope, dict):
            raise EnvelopeError("MALFORMED_ENVELOPE", "structured event is not a JSON object")
        attrs = envelope
        data = envelope.get("data")
        if data is None and "data_base64" in envelope:
            raise EnvelopeError("MALFORMED_ENVELOPE", "data_base64 is not accepted: send JSON data")
        time_raw = envelope.get("time")
        if time_raw is not None and not isinstance(time_raw, str):
            raise EnvelopeError("MALFORMED_ENVELOPE", "ce time is not a string")
    else:
        if content_type and content_type != JSON_CONTENT_TYPE:
            raise EnvelopeError(
                "MALFORMED_ENVELOPE", f"content-type {content_type!r} is not {JSON_CONTENT_TYPE}"
            )
        if bad_attribute is not None:
            # An attribute (ce_id is the idempotency key) must not be silently altered by a
            # lossy decode, so the record is refused instead.
            raise EnvelopeError(
                "MALFORMED_ENVELOPE", f"CloudEvents attribute header {bad_attribute!r} is not UTF-8"
            )
        data = _json(value) if parse_data else None
        time_raw = attrs.get("time")
    if attrs.get("specversion") != SPECVERSION:
        raise EnvelopeError(
            "MALFORMED_ENVELOPE",
            f"ce specversion must be {SPECVERSION}, got {attrs.get('specversion')!r}",
        )
    return CloudEvent(
        id=_required(attrs, "id"),
        source=_required(attrs, "source"),
        type=_required(attrs, "type"),
        time=_parse_time(time_raw),
        data=data,
        structured=content_type == STRUCTURED_CONTENT_TYPE,
        traceparent=_extension(attrs, "traceparent"),
        tracestate=_extension(attrs, "tracestate"),
    )


def _extension(attrs: dict[str, Any], name: str) -> str | None:
    value = attrs.get(name)
    return value if isinstance(value, str) and value else None


def binary_headers(
    *,
    event_id: str,
    source: str,
    ce_type: str,
    time: datetime,
    subject: str | None = None,
    dataschema: str | None = None,
) -> Headers:
    """Headers of a binary-mode CloudEvent carrying JSON data."""
    if time.utcoffset() is None:
        # RFC 3339 needs an offset; `decode` would refuse the event this would produce.
        raise ValueError("ce time must be timezone-aware")
    values = (SPECVERSION, event_id, source, ce_type, time.isoformat(), JSON_CONTENT_TYPE)
    headers: Headers = [
        (name, value.encode()) for name, value in zip(BINARY_HEADERS, values, strict=True)
    ]
    if subject is not None:
        headers.append(("ce_subject", subject.encode()))
    if dataschema is not None:
        headers.append(("ce_dataschema", dataschema.encode()))
    return headers


def pack_headers(headers: Headers) -> bytes:
    """Headers as one bytea (length-prefixed pairs): one column instead of ragged arrays."""
    out = bytearray()
    for k, v in headers:
        kb = k.encode("utf-8")
        vb = v or b""
        out += struct.pack(">HI", len(kb), len(vb)) + kb + vb
    return bytes(out)


def unpack_headers(blob: bytes) -> Headers:
    headers: Headers = []
    pos = 0
    while pos < len(blob):
        klen, vlen = struct.unpack_from(">HI", blob, pos)
        pos += 6
        key = blob[pos : pos + klen].decode("utf-8")
        pos += klen
        headers.append((key, blob[pos : pos + vlen]))
        pos += vlen
    return headers
