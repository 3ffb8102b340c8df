"""CloudEvents 1.0 over Kafka: decoding inbound records (binary and structured mode), encoding."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest

from ptsp_gate.contract.cloudevents import (
    BINARY_HEADERS,
    CloudEvent,
    EnvelopeError,
    Headers,
    binary_headers,
    decode,
)
from ptsp_gate.contract.events import CE_TYPE_APPLICATION, CE_TYPE_DECISION

WITA = timezone(timedelta(hours=8))
DATA = {"application_id": "OSS-1", "employer": {"name": "PT Maju Jaya Ñusantara"}}
VALUE = json.dumps(DATA).encode()


def _binary(**overrides: bytes | None) -> Headers:
    headers: dict[str, bytes | None] = {
        "ce_specversion": b"1.0",
        "ce_id": b"evt-0001",
        "ce_source": b"urn:ptsp:7314:oss-rba",
        "ce_type": CE_TYPE_APPLICATION.encode(),
        "ce_time": b"2025-03-04T09:15:00+08:00",
        "content-type": b"application/json",
    }
    headers.update(overrides)
    return [(k, v) for k, v in headers.items() if v is not None]


def _structured(**overrides: Any) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-0002",
        "source": "urn:ptsp:7314:oss-rba",
        "type": CE_TYPE_APPLICATION,
        "time": "2025-03-04T09:15:00+08:00",
        "datacontenttype": "application/json",
        "data": DATA,
    }
    envelope.update(overrides)
    return {k: v for k, v in envelope.items() if v is not ...}


STRUCTURED_HEADERS: Headers = [("content-type", b"application/cloudevents+json")]


def _error(headers: Headers, value: bytes | None) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as info:
        decode(headers, value)
    return info.value


# --- binary mode --------------------------------------------------------------------------------


def test_binary_mode() -> None:
    event = decode(_binary(), VALUE)
    assert isinstance(event, CloudEvent)
    assert event.id == "evt-0001"
    assert event.source == "urn:ptsp:7314:oss-rba"
    assert event.type == CE_TYPE_APPLICATION
    assert event.time == datetime(2025, 3, 4, 9, 15, tzinfo=WITA)
    assert event.time is not None
    assert event.time.utcoffset() == timedelta(hours=8)
    assert event.data == DATA
    assert not event.structured


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(_binary(**{"content-type": b"application/json; charset=utf-8"}), id="params"),
        pytest.param(_binary(**{"content-type": b"Application/JSON"}), id="case"),
        pytest.param([(k.upper(), v) for k, v in _binary()], id="upper-case-header-names"),
        pytest.param(_binary(ce_time=None), id="no-time"),
        pytest.param(_binary(**{"content-type": None}), id="no-content-type"),
        pytest.param(_binary(ce_time=b"2025-03-04T01:15:00Z"), id="time-z"),
    ],
)
def test_binary_mode_variants_accepted(headers: Headers) -> None:
    event = decode(headers, VALUE)
    assert event.id == "evt-0001"
    assert event.data == DATA


def test_binary_mode_without_time() -> None:
    assert decode(_binary(ce_time=None), VALUE).time is None


# How a binary-mode record is refused: the headers changed from a good record's (None drops
# one), the value, the error code, and a word its message names.
BINARY_REFUSALS: dict[str, tuple[dict[str, bytes | None], bytes | None, str, str]] = {
    "missing-id": ({"ce_id": None}, VALUE, "MALFORMED_ENVELOPE", "'id'"),
    "blank-id": ({"ce_id": b"  "}, VALUE, "MALFORMED_ENVELOPE", "'id'"),
    "long-id": ({"ce_id": b"x" * 257}, VALUE, "MALFORMED_ENVELOPE", "too long"),
    "missing-source": ({"ce_source": None}, VALUE, "MALFORMED_ENVELOPE", "'source'"),
    "missing-type": ({"ce_type": None}, VALUE, "MALFORMED_ENVELOPE", "'type'"),
    "specversion-0.3": ({"ce_specversion": b"0.3"}, VALUE, "MALFORMED_ENVELOPE", "specversion"),
    "no-specversion": ({"ce_specversion": None}, VALUE, "MALFORMED_ENVELOPE", "specversion"),
    "text-plain": ({"content-type": b"text/plain"}, VALUE, "MALFORMED_ENVELOPE", "content-type"),
    "xml": ({"content-type": b"application/xml"}, VALUE, "MALFORMED_ENVELOPE", "content-type"),
    "batch-mode": (
        {"content-type": b"application/cloudevents-batch+json"},
        VALUE,
        "MALFORMED_ENVELOPE",
        "content-type",
    ),
    "not-json": ({}, b"not json", "MALFORMED_JSON", "JSON"),
    "empty-value": ({}, b"", "MALFORMED_JSON", "JSON"),
    "truncated-json": ({}, b'{"a": 1', "MALFORMED_JSON", "JSON"),
    "not-utf8": ({}, b'\xff{"a": 1}', "MALFORMED_JSON", "UTF-8"),
    "utf16": ({}, json.dumps(DATA).encode("utf-16"), "MALFORMED_JSON", "UTF-8"),
    "utf32": ({}, json.dumps(DATA).encode("utf-32-le"), "MALFORMED_JSON", "UTF-8"),
    "tombstone": ({}, None, "MALFORMED_ENVELOPE", "tombstone"),
    "time-no-offset": ({"ce_time": b"2025-03-04T09:15:00"}, VALUE, "MALFORMED_ENVELOPE", "offset"),
    "time-date-only": ({"ce_time": b"2025-03-04"}, VALUE, "MALFORMED_ENVELOPE", "offset"),
    "time-garbage": ({"ce_time": b"yesterday"}, VALUE, "MALFORMED_ENVELOPE", "RFC 3339"),
}


@pytest.mark.parametrize(
    ("changes", "value", "code", "needle"), BINARY_REFUSALS.values(), ids=BINARY_REFUSALS
)
def test_binary_mode_rejections(
    changes: dict[str, bytes | None], value: bytes | None, code: str, needle: str
) -> None:
    error = _error(_binary(**changes), value)
    assert error.code == code
    assert needle in error.message
    assert str(error) == error.message
    assert isinstance(error, ValueError)


def test_tombstone_with_no_headers() -> None:
    assert _error([], None).code == "MALFORMED_ENVELOPE"


# --- header bytes -------------------------------------------------------------------------------


def test_non_utf8_bytes_in_other_headers_do_not_fail_the_record() -> None:
    headers = [*_binary(), ("traceparent", b"\xff\xfe\x00bad"), ("x-origin", b"\xc3\x28")]
    event = decode(headers, VALUE)
    assert event.id == "evt-0001"
    assert event.data == DATA


def test_null_header_value_is_tolerated() -> None:
    # The Kafka protocol allows a header with a null value.
    headers = cast(Headers, [*_binary(), ("x-empty", None)])
    assert decode(headers, VALUE).id == "evt-0001"


@pytest.mark.parametrize(
    "attribute", ["ce_id", "ce_source", "ce_type", "ce_time", "ce_specversion"]
)
def test_non_utf8_attribute_is_refused_not_mangled(attribute: str) -> None:
    # ce_id is the idempotency key: two distinct byte strings must not collapse into one id.
    good = dict(_binary())[attribute]
    error = _error(_binary(**{attribute: good + b"\xff"}), VALUE)
    assert error.code == "MALFORMED_ENVELOPE"
    assert attribute in error.message


def test_non_utf8_content_type_is_refused() -> None:
    error = _error(_binary(**{"content-type": b"application/json\xff"}), VALUE)
    assert error.code == "MALFORMED_ENVELOPE"


# --- structured mode ----------------------------------------------------------------------------


def test_structured_mode() -> None:
    event = decode(STRUCTURED_HEADERS, json.dumps(_structured()).encode())
    assert event.id == "evt-0002"
    assert event.source == "urn:ptsp:7314:oss-rba"
    assert event.type == CE_TYPE_APPLICATION
    assert event.time == datetime(2025, 3, 4, 1, 15, tzinfo=UTC)
    assert event.data == DATA
    assert event.structured


def test_structured_mode_ignores_ce_headers() -> None:
    headers = [
        ("content-type", b"application/cloudevents+json; charset=UTF-8"),
        ("ce_id", b"\xffjunk"),
        ("ce_specversion", b"0.3"),
    ]
    event = decode(headers, json.dumps(_structured()).encode())
    assert event.id == "evt-0002"


@pytest.mark.parametrize(
    ("value", "code", "needle"),
    [
        pytest.param(
            json.dumps(_structured(data=..., data_base64="eyJhIjogMX0=")).encode(),
            "MALFORMED_ENVELOPE",
            "data_base64",
            id="data-base64",
        ),
        pytest.param(
            json.dumps([_structured()]).encode(), "MALFORMED_ENVELOPE", "object", id="array"
        ),
        pytest.param(b'"evt"', "MALFORMED_ENVELOPE", "object", id="string"),
        pytest.param(b"{not json", "MALFORMED_JSON", "JSON", id="not-json"),
        pytest.param(
            json.dumps(_structured(id=...)).encode(), "MALFORMED_ENVELOPE", "'id'", id="no-id"
        ),
        pytest.param(
            json.dumps(_structured(id=42)).encode(), "MALFORMED_ENVELOPE", "'id'", id="id-number"
        ),
        pytest.param(
            json.dumps(_structured(specversion="0.3")).encode(),
            "MALFORMED_ENVELOPE",
            "specversion",
            id="specversion",
        ),
        pytest.param(
            json.dumps(_structured(time=1741050900)).encode(),
            "MALFORMED_ENVELOPE",
            "not a string",
            id="time-number",
        ),
        pytest.param(
            json.dumps(_structured(time="2025-03-04T09:15:00")).encode(),
            "MALFORMED_ENVELOPE",
            "offset",
            id="time-no-offset",
        ),
        pytest.param(None, "MALFORMED_ENVELOPE", "tombstone", id="tombstone"),
    ],
)
def test_structured_mode_rejections(value: bytes | None, code: str, needle: str) -> None:
    error = _error(STRUCTURED_HEADERS, value)
    assert error.code == code
    assert needle in error.message


def test_structured_mode_without_data_yields_none() -> None:
    # Payload validation (not the envelope) rejects the missing data.
    event = decode(STRUCTURED_HEADERS, json.dumps(_structured(data=...)).encode())
    assert event.data is None


def test_structured_mode_with_both_data_and_base64_uses_data() -> None:
    value = json.dumps(_structured(data_base64="eyJhIjogMX0=")).encode()
    assert decode(STRUCTURED_HEADERS, value).data == DATA


# --- encoding -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "time",
    [
        datetime(2025, 3, 4, 1, 15, 2, 481000, tzinfo=UTC),
        datetime(2025, 3, 4, 9, 15, tzinfo=WITA),
    ],
)
@pytest.mark.parametrize("subject", [None, "OSS-7314-2025-000123"])
def test_binary_headers_round_trip(time: datetime, subject: str | None) -> None:
    headers = binary_headers(
        event_id="dec-1",
        source="urn:ptsp-gate:permit-checker",
        ce_type=CE_TYPE_DECISION,
        time=time,
        subject=subject,
    )
    names = [name for name, _ in headers]
    assert names[:6] == list(BINARY_HEADERS)
    assert dict(headers).get("ce_subject") == (subject.encode() if subject else None)
    assert all(isinstance(value, bytes) for _, value in headers)

    event = decode(headers, VALUE)
    assert event == CloudEvent(
        id="dec-1",
        source="urn:ptsp-gate:permit-checker",
        type=CE_TYPE_DECISION,
        time=time,
        data=DATA,
    )
    assert event.time is not None
    assert event.time.utcoffset() == time.utcoffset()


def test_binary_headers_round_trip_non_ascii() -> None:
    headers = binary_headers(
        event_id="évènement-1",
        source="urn:ptsp:Sidrap",
        ce_type=CE_TYPE_DECISION,
        time=datetime.now(UTC),
    )
    assert decode(headers, VALUE).id == "évènement-1"


def test_binary_headers_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        binary_headers(
            event_id="dec-1",
            source="urn:ptsp-gate:permit-checker",
            ce_type=CE_TYPE_DECISION,
            time=datetime(2025, 3, 4, 9, 15),
        )
