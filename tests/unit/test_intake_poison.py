"""No record can make reading raise: every input is either accepted or gets a dead-letter code.

The poison kinds first (each once, by name), then properties over arbitrary bytes and headers for
both input topics. `bench/fuzz_intake.py` runs the same property at scale.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptsp_gate import demo
from ptsp_gate.contract import json_limits
from ptsp_gate.contract.events import CE_TYPE_APPLICATION, CE_TYPE_ENROLMENT, EnrolmentState
from ptsp_gate.contract.events import PermitApplication as Application
from ptsp_gate.runtime import intake

from .test_intake import Rec

CODES = {
    "MALFORMED_ENVELOPE",
    "MALFORMED_JSON",
    "UNKNOWN_TYPE",
    "SCHEMA_VIOLATION",
    "OVERSIZED",
}
NOW = datetime(2026, 11, 1, tzinfo=UTC)
STRUCTURED = [("content-type", b"application/cloudevents+json")]


def _headers(ce_type: str = CE_TYPE_APPLICATION) -> list[tuple[str, bytes]]:
    _key, headers, _value = demo.application_record(demo.application(1, now=NOW))
    return [(k, ce_type.encode() if k == "ce_type" else v) for k, v in headers]


def _structured(data_json: str) -> Rec:
    attrs = {k[3:]: v.decode() for k, v in _headers() if k.startswith("ce_")}
    envelope = json.dumps(attrs)[:-1] + ', "data": ' + data_json + "}"
    return Rec(envelope.encode(), STRUCTURED)


def _read_application(rec: Rec) -> intake.Valid | intake.Invalid:
    return intake.read(rec, Application, (CE_TYPE_APPLICATION,), 1_048_576)


def _read_enrolment(rec: Rec) -> intake.Valid | intake.Invalid:
    return intake.read(rec, EnrolmentState, (CE_TYPE_ENROLMENT,), 1_048_576)


DEEP = "[" * 1000 + "]" * 1000
POISON = {
    "binary arrays nested 1,000 deep": (Rec(DEEP.encode(), _headers()), "SCHEMA_VIOLATION"),
    "binary objects nested 1,000 deep": (
        Rec(('{"a":' * 1000 + "1" + "}" * 1000).encode(), _headers()),
        "SCHEMA_VIOLATION",
    ),
    "unknown type nested 1,000 deep": (Rec(DEEP.encode(), _headers("x.y")), "UNKNOWN_TYPE"),
    "structured data nested 5,000 deep": (
        _structured("[" * 5000 + "]" * 5000),
        "SCHEMA_VIOLATION",
    ),
    "structured 5,000-digit number": (_structured("1" * 5000), "SCHEMA_VIOLATION"),
    "binary 5,000-digit number": (
        Rec(b'{"application_id": ' + b"9" * 5000 + b"}", _headers()),
        "SCHEMA_VIOLATION",
    ),
    "deep and unterminated": (Rec(b'["' + b'\\"' * 20000, _headers()), "MALFORMED_JSON"),
    # Valid to Python's parsers, refused by PostgreSQL's jsonb (or by any UTF-8 encoder).
    "binary NaN": (Rec(b'{"application_id": "A-1", "x": NaN}', _headers()), "SCHEMA_VIOLATION"),
    "binary -Infinity": (Rec(b'{"x": -Infinity}', _headers()), "SCHEMA_VIOLATION"),
    "structured 1e400": (_structured('{"x": 1e400}'), "SCHEMA_VIOLATION"),
    "binary lone surrogate": (Rec(b'{"x": "\\ud800"}', _headers()), "SCHEMA_VIOLATION"),
    "structured lone surrogate in ce_id": (
        Rec(
            json.dumps({"specversion": "1.0", "id": "\ud800", "source": "s", "type": "t"}).encode(),
            STRUCTURED,
        ),
        "SCHEMA_VIOLATION",
    ),
    "deep inside an unknown type's structured envelope": (
        Rec(b'{"specversion": "1.0", "x": ' + DEEP.encode() + b"}", STRUCTURED),
        "SCHEMA_VIOLATION",
    ),
}


def _as_enrolment(rec: Rec) -> Rec:
    """The same record on the enrolment topic: its application ce_type becomes the enrolment's."""
    swap = {CE_TYPE_APPLICATION.encode(): CE_TYPE_ENROLMENT.encode()}
    headers = [(k, swap.get(v, v) if k == "ce_type" else v) for k, v in rec.headers]
    value = rec.value
    if value is not None and rec.headers == STRUCTURED:
        value = value.replace(CE_TYPE_APPLICATION.encode(), CE_TYPE_ENROLMENT.encode())
    return Rec(value, headers, topic="enrolment")


@pytest.mark.parametrize("name", sorted(POISON))
def test_each_poison_kind_is_a_dead_letter_with_a_reason(name: str) -> None:
    rec, code = POISON[name]
    for item in (_read_application(rec), _read_enrolment(_as_enrolment(rec))):
        assert isinstance(item, intake.Invalid)
        assert item.code == code, item.message
        assert item.message
        assert len(item.message) < 2000


def test_brackets_and_digits_inside_strings_do_not_count() -> None:
    text = json.dumps({"note": "[" * 500 + "9" * 500, "list": [[[1]]]}).encode()
    json_limits.check(text)  # does not raise
    assert json_limits.loads(text)["list"] == [[[1]]]


@pytest.mark.parametrize(
    ("depth", "ok"), [(json_limits.MAX_DEPTH, True), (json_limits.MAX_DEPTH + 1, False)]
)
def test_the_depth_limit_is_exact(depth: int, ok: bool) -> None:
    raw = ("[" * depth + "]" * depth).encode()
    if ok:
        json_limits.check(raw)
    else:
        with pytest.raises(json_limits.JsonLimitError, match="nested deeper"):
            json_limits.check(raw)


def test_a_wide_value_is_not_deep() -> None:
    json_limits.check(b"[" + b",".join([b"[]"] * 100_000) + b"]")


_header_names = st.one_of(
    st.sampled_from(
        ["ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time", "content-type", "CE_ID"]
    ),
    st.text(max_size=20),
)
_header_values = st.one_of(
    st.none(),
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"1.0",
            CE_TYPE_APPLICATION.encode(),
            CE_TYPE_ENROLMENT.encode(),
            b"application/json",
            b"application/cloudevents+json",
            b"2026-11-30T00:00:00+07:00",
            b"not a time",
        ]
    ),
)
_json_ish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children)
    ),
    max_leaves=30,
).map(lambda v: json.dumps(v).encode())
_values = st.one_of(
    st.none(),
    st.binary(max_size=512),
    _json_ish,
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 3000).map(lambda n: b"1" * n),
)


RECORDS = st.builds(
    lambda value, headers, structured: Rec(value, headers + (STRUCTURED if structured else [])),
    _values,
    st.lists(st.tuples(_header_names, _header_values), max_size=8),
    st.booleans(),
)


def assert_answered(rec: Rec) -> None:
    """The property: on either topic, a record is accepted or dead-lettered with a contract code,
    and its dead letter can be built."""
    for read in (_read_application, _read_enrolment):
        item = read(rec)
        if isinstance(item, intake.Invalid):
            assert item.code in CODES, (item.code, item.message)
            assert isinstance(item.event_key, str)
            intake.dlq_headers(item)
            intake.dlq_value(item)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(RECORDS)
def test_any_bytes_and_headers_are_accepted_or_dead_lettered(rec: Rec) -> None:
    assert_answered(rec)


@settings(max_examples=300)
@given(data=st.data())
def test_a_valid_event_with_one_field_mangled_is_still_an_answer(data: st.DataObject) -> None:
    _key, headers, value = demo.application_record(
        demo.application(data.draw(st.integers(1, 50)), now=NOW)
    )
    raw = bytearray(value)
    for _ in range(data.draw(st.integers(1, 5))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    item = _read_application(Rec(bytes(raw), headers))
    assert isinstance(item, intake.Valid) or item.code in CODES


def test_many_empty_headers_count_as_their_wire_size_and_the_dead_letter_stays_small() -> None:
    rec = Rec(b"{}", _headers() + [("x", b"")] * 200_000)
    item = _read_application(rec)
    assert isinstance(item, intake.Invalid)
    assert item.code == "OVERSIZED"
    headers = intake.dlq_headers(item)
    wire = sum(len(k.encode()) + len(v) + intake.HEADER_OVERHEAD_BYTES for k, v in headers)
    assert wire < intake.OVERSIZED_KEEP_BYTES + 4096
    truncated = dict(headers)["ptsp-gate-truncated"]
    assert truncated.startswith(b"header:x,header:x")
    assert truncated.endswith(b",...")
    assert len(truncated) <= 1004
