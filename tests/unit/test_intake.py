"""From raw record to a valid event or a precise error code (pure, no broker)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from ptsp_gate import demo
from ptsp_gate.contract.events import CE_TYPE_APPLICATION, PermitApplication
from ptsp_gate.runtime import intake

NOW = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass
class Rec:
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    key: bytes | None = b"k"
    topic: str = "apps"
    partition: int = 0
    offset: int = 7


def read(rec: Rec, max_bytes: int = 1_048_576):
    return intake.read(rec, PermitApplication, (CE_TYPE_APPLICATION,), max_bytes)


def good() -> Rec:
    _key, headers, value = demo.application_record(demo.application(1, now=NOW))
    return Rec(value, headers)


def test_valid_binary_event() -> None:
    item = read(good())
    assert isinstance(item, intake.Valid)
    assert item.payload.employer.nib == demo.nib(1)


def test_valid_structured_event() -> None:
    rec = good()
    attrs = {k[3:]: v.decode() for k, v in rec.headers if k.startswith("ce_")}
    envelope = {**attrs, "data": json.loads(rec.value or b"")}
    item = read(
        Rec(json.dumps(envelope).encode(), [("content-type", b"application/cloudevents+json")])
    )
    assert isinstance(item, intake.Valid)


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda r: Rec(b"\xff\x00", r.headers), "MALFORMED_JSON"),
        (lambda r: Rec(b"{", r.headers), "MALFORMED_JSON"),
        (lambda r: Rec(None, r.headers), "MALFORMED_ENVELOPE"),
        (lambda r: Rec(r.value, [h for h in r.headers if h[0] != "ce_id"]), "MALFORMED_ENVELOPE"),
        (
            lambda r: Rec(
                r.value, [(k, b"other.type" if k == "ce_type" else v) for k, v in r.headers]
            ),
            "UNKNOWN_TYPE",
        ),
        (
            lambda r: Rec(r.value, [(k, b"a\x00b" if k == "ce_id" else v) for k, v in r.headers]),
            "MALFORMED_ENVELOPE",
        ),
        (
            lambda r: Rec(r.value, [(k, b"x.\x00" if k == "ce_type" else v) for k, v in r.headers]),
            "MALFORMED_ENVELOPE",
        ),
        (lambda r: Rec(b"[1]", r.headers), "SCHEMA_VIOLATION"),
        (lambda r: Rec(b'{"application_id": "A"}', r.headers), "SCHEMA_VIOLATION"),
        (
            lambda r: Rec((r.value or b"").replace(b'"CV ', b'"\\u0000CV '), r.headers),
            "SCHEMA_VIOLATION",
        ),
    ],
)
def test_bad_records_get_a_stable_code(mutate, code) -> None:
    item = read(mutate(good()))
    assert isinstance(item, intake.Invalid)
    assert item.code == code
    assert item.message


def test_oversized_is_refused_before_parsing_and_truncated_for_the_dlq() -> None:
    rec = good()
    rec.value = (rec.value or b"")[:-1] + b', "pad": "' + b"x" * 3000 + b'"}'
    item = read(rec, max_bytes=2048)
    assert isinstance(item, intake.Invalid)
    assert item.code == "OVERSIZED"
    assert intake.dlq_value(item) == rec.value  # under the 64 KiB head, kept whole
    big = Rec(b"x" * (200 * 1024), rec.headers)
    item = read(big, max_bytes=2048)
    assert len(intake.dlq_value(item) or b"") == intake.OVERSIZED_KEEP_BYTES
    assert ("ptsp-gate-original-size", str(200 * 1024).encode()) in intake.dlq_headers(item)


def test_invalid_event_key_is_ce_id_or_a_digest_of_the_bytes() -> None:
    rec = good()
    with_id = read(Rec(b"[1]", rec.headers))
    assert isinstance(with_id, intake.Invalid)
    assert with_id.event_key == dict(rec.headers)["ce_id"].decode()
    a = read(Rec(b"garbage", [("x", b"1")]))
    b = read(Rec(b"garbage", [("x", b"1")]))
    c = read(Rec(b"garbage", [("x", b"2")]))
    assert isinstance(a, intake.Invalid)
    assert isinstance(b, intake.Invalid)
    assert isinstance(c, intake.Invalid)
    assert a.event_key == b.event_key != c.event_key
    assert a.event_key.startswith("sha256:")


def test_dlq_headers_keep_the_originals_and_name_the_error() -> None:
    rec = Rec(b"nope", [("ce_id", b"1"), ("weird", b"\xff")])
    item = read(rec)
    assert isinstance(item, intake.Invalid)
    headers = intake.dlq_headers(item, NOW)
    assert headers[:2] == rec.headers
    named = dict(headers[2:])
    assert named["ptsp-gate-error-code"] == b"MALFORMED_ENVELOPE"  # no ce_ attributes
    assert named["ptsp-gate-source-topic"] == b"apps"
    assert named["ptsp-gate-source-offset"] == b"7"
    assert named["ptsp-gate-failed-at"] == NOW.isoformat().encode()


def test_a_header_name_too_long_to_store_is_left_out_of_the_dead_letter() -> None:
    from ptsp_gate.contract.cloudevents import pack_headers, unpack_headers

    rec = Rec(b"nope", [("x" * 70_000, b"v"), ("ok", b"1")])
    item = read(rec)
    assert isinstance(item, intake.Invalid)
    headers = intake.dlq_headers(item, NOW)
    assert headers[0][0] == "ok"
    assert unpack_headers(pack_headers(headers)) == headers


def test_field_reads_only_plausible_strings() -> None:
    item = read(
        Rec(
            json.dumps(
                {"application_id": "A-1", "employer": {"nib": 5}, "region_code": "x" * 500}
            ).encode(),
            good().headers,
        )
    )
    assert isinstance(item, intake.Invalid)
    assert item.field("application_id") == "A-1"
    assert item.field("employer", "nib") is None
    assert item.field("region_code") is None
    assert item.field("missing", "path") is None
