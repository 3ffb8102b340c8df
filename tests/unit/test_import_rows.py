"""The bulk import's row parser: what it accepts and what goes to COPY, why it refuses, the
header and timestamps."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ptsp_gate.enrolment_import import (
    FIELDS,
    BadRow,
    BrokenFile,
    RowParser,
    parse_timestamp,
    read_header,
)

from .import_support import NIK, NPWP_15, NPWP_16, PARSER, bad_check_digit, cells


def staged(**changes: str) -> list[str]:
    return PARSER.stage_line(cells(**changes), 2).split("\t")


# --- accepted rows and what goes to COPY -------------------------------------------------------


def test_a_good_row_becomes_a_copy_line_in_field_order() -> None:
    assert staged() == [
        "2",
        "9120001234567",
        NPWP_15,
        "NPP19000123",
        "ACTIVE",
        "PU",
        "{JHT,JKK,JKM}",
        "12",
        "0",
        "{}",
        "f",
        "2025-06-29T17:00:00+00:00",
        "7",
    ]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("npwp", NPWP_16, NPWP_16),
        ("npwp", NIK, NIK),
        ("programs", "", "{}"),
        ("programs", "JKP|JKK|JKK", "{JKK,JKP}"),
        ("pds_flags", "WAGES|WORKERS", "{WAGES,WORKERS}"),
        ("sanction_requested", "TRUE", "t"),
        ("sanction_requested", "True", "t"),
        ("sanction_requested", "1", "t"),
        ("sanction_requested", "0", "f"),
        ("workers_enrolled", "007", "7"),
        ("workers_enrolled", "10000000", "10000000"),
        ("arrears_months", "1200", "1200"),
        ("version", "9223372036854775807", "9223372036854775807"),
        ("version", "0", "0"),
        ("as_of", "2025-06-30T00:00:00Z", "2025-06-30T00:00:00+00:00"),
        ("as_of", "2025-06-30t00:00:00z", "2025-06-30T00:00:00+00:00"),
        ("as_of", "2025-06-30 08:00:00-00:00", "2025-06-30T08:00:00+00:00"),
        ("as_of", "2024-02-29T23:59:59.1234567+08:00", "2024-02-29T15:59:59.123456+00:00"),
        ("as_of", "2025-01-01T00:00:00+23:59", "2024-12-31T00:01:00+00:00"),
        ("npp", "a\\b\tc", "a\\\\b\\tc"),
        ("npp", "😀" * 64, "😀" * 64),
        ("npp", " padded ", " padded "),
    ],
)
def test_accepted_values(field: str, value: str, expected: str) -> None:
    assert staged(**{field: value})[1 + FIELDS.index(field)] == expected


# --- refused rows -------------------------------------------------------------------------------

# Every field must be given, but for the two sets: an empty cell is the empty set.
MISSING = [(f, "", f"{f}: missing") for f in FIELDS if f not in ("programs", "pds_flags")]
# How a reason begins (the field, then why), and the values refused for it.
REFUSED_BY_REASON: dict[str, list[str]] = {
    "nib: must be 13 digits": [
        "912000123456",
        "91200012345678",
        "912000123456x",
        "٩١٢٠٠٠١٢٣٤٥٦٧",  # Arabic-Indic digits
    ],
    "npwp: must be 15 or 16 digits": ["12345"],
    "npwp: check digit is wrong": [bad_check_digit(NPWP_15, 8), bad_check_digit(NPWP_16, 9)],
    "npwp: not a valid NIK": ["7314013208900001"],  # 32nd day
    "npp: longer than 64 characters": ["x" * 65],
    "npp: contains a NUL character": ["a\x00b"],
    "status: unknown status 'active'": ["active"],
    "status: unknown status 'SUSPENDED'": ["SUSPENDED"],
    "segment: unknown segment 'XX'": ["XX"],
    "programs: unknown programme 'JKK;JKM'": ["JKK;JKM"],
    "programs: unknown programme ''": ["JKK||JKM"],
    "programs: unknown programme ' JKM'": ["JKK| JKM"],
    "pds_flags: unknown PDS flag 'WAGE'": ["WAGE"],
    "workers_enrolled: must be a whole number": ["-1", "1.5", "+3", " 3"],
    "workers_enrolled: must be at most 10000000": ["10000001"],
    "arrears_months: must be at most 1200": ["1201"],
    "version: must be at most 9223372036854775807": ["9223372036854775808", "9" * 5000],
    "sanction_requested: must be true or false": ["yes"],
    "as_of: must be an RFC 3339 timestamp": [
        "2025-06-30",
        "2025-06-30T00:00:00",
        "1751216400",
        "2025-06-30T00:00:00+0700",
    ],
    "as_of: not a valid date and time": [
        "2025-02-30T00:00:00Z",
        "2025-06-30T24:00:00Z",
        "2025-06-30T23:59:60Z",
    ],
    "as_of: offset out of range": ["2025-06-30T00:00:00+24:00"],
    "as_of: out of range once in UTC": ["0001-01-01T00:00:00+01:00"],
}
REFUSED = MISSING + [
    (reason.split(":")[0], value, reason)
    for reason, values in REFUSED_BY_REASON.items()
    for value in values
]


@pytest.mark.parametrize(("field", "value", "reason"), REFUSED)
def test_refused_values(field: str, value: str, reason: str) -> None:
    with pytest.raises(BadRow) as caught:
        PARSER.stage_line(cells(**{field: value}), 2)
    assert str(caught.value).startswith(reason), str(caught.value)


def test_every_reason_of_a_row_is_given() -> None:
    with pytest.raises(BadRow) as caught:
        PARSER.stage_line(cells(nib="x", status="Z", as_of="yesterday"), 2)
    assert [r.split(":")[0] for r in str(caught.value).split("; ")] == ["nib", "status", "as_of"]


def test_npwp_values_are_never_echoed_in_reasons() -> None:
    wrong = bad_check_digit(NPWP_15, 8)
    with pytest.raises(BadRow) as caught:
        PARSER.stage_line(cells(npwp=wrong), 2)
    assert wrong not in str(caught.value)


@pytest.mark.parametrize("count", [11, 13, 1])
def test_a_wrong_number_of_fields_is_a_bad_row(count: int) -> None:
    row = [*cells(), "extra", "extra"][:count]
    with pytest.raises(BadRow, match=f"has {count} fields, the header has 12"):
        PARSER.stage_line(row, 2)


# --- the header ---------------------------------------------------------------------------------


def test_header_columns_may_come_in_any_order() -> None:
    header = list(reversed(FIELDS))
    parser = RowParser(header)
    row = list(reversed(cells()))
    assert parser.stage_line(row, 5) == PARSER.stage_line(cells(), 5)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ([*FIELDS, "region"], "unknown column(s) 'region'"),
        ([f for f in FIELDS if f != "as_of"], "missing column(s) as_of"),
        ([*FIELDS, "nib"], "repeated column(s) nib"),
        (["NIB", *FIELDS[1:]], "unknown column(s) 'NIB'; missing column(s) nib"),
        (["9120001234567", *FIELDS[1:]], "unknown column(s) '9120001234567'"),
    ],
)
def test_a_wrong_header_is_a_broken_file(header: list[str], message: str) -> None:
    with pytest.raises(BrokenFile, match=re.escape(message)):
        read_header(header)


# --- timestamps ---------------------------------------------------------------------------------


def test_timestamps_keep_their_offset() -> None:
    parsed = parse_timestamp("2025-06-30T07:00:00.5+07:00")
    assert parsed == datetime(2025, 6, 30, 0, 0, 0, 500_000, UTC)
    assert parsed.utcoffset() == timedelta(hours=7)


def test_offsets_in_timestamps_are_real_offsets() -> None:
    assert parse_timestamp("2025-01-01T00:00:00-23:59").utcoffset() == -timedelta(
        hours=23, minutes=59
    )
    assert parse_timestamp("2025-01-01T00:00:00Z").tzinfo == timezone.utc  # noqa: UP017
