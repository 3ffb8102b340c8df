"""The bulk import's row parser: what it accepts and why it refuses, and that it agrees with the
EnrolmentState model (the stream's validation) on generated rows."""

from __future__ import annotations

import gzip
import io
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from stdnum import luhn

from ptsp_gate import enrolment_import
from ptsp_gate.cli.enrolment import default_rejects_path, make_progress
from ptsp_gate.contract.events import EnrolmentState
from ptsp_gate.enrolment_import import (
    FIELDS,
    BadRow,
    BrokenFile,
    RowParser,
    parse_timestamp,
    read_header,
)

NPWP_15 = "013000666091000"
NPWP_16 = "0013000666091000"
NIK = "7314011508900001"
GOOD: dict[str, str] = {
    "nib": "9120001234567",
    "npwp": NPWP_15,
    "npp": "NPP19000123",
    "status": "ACTIVE",
    "segment": "PU",
    "programs": "JKK|JKM|JHT",
    "workers_enrolled": "12",
    "arrears_months": "0",
    "pds_flags": "",
    "sanction_requested": "false",
    "as_of": "2025-06-30T00:00:00+07:00",
    "version": "7",
}
PARSER = RowParser(FIELDS)


def cells(**changes: str) -> list[str]:
    row = {**GOOD, **changes}
    return [row[f] for f in FIELDS]


def staged(**changes: str) -> list[str]:
    return PARSER.stage_line(cells(**changes), 2).split("\t")


def bad_check_digit(npwp: str, position: int) -> str:
    return npwp[:position] + str((int(npwp[position]) + 1) % 10) + npwp[position + 1 :]


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


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("nib", "", "nib: missing"),
        ("nib", "912000123456", "nib: must be 13 digits"),
        ("nib", "91200012345678", "nib: must be 13 digits"),
        ("nib", "912000123456x", "nib: must be 13 digits"),
        ("nib", "٩١٢٠٠٠١٢٣٤٥٦٧", "nib: must be 13 digits"),  # Arabic-Indic digits
        ("npwp", "", "npwp: missing"),
        ("npwp", "12345", "npwp: must be 15 or 16 digits"),
        ("npwp", bad_check_digit(NPWP_15, 8), "npwp: check digit is wrong"),
        ("npwp", bad_check_digit(NPWP_16, 9), "npwp: check digit is wrong"),
        ("npwp", "7314013208900001", "npwp: not a valid NIK"),  # 32nd day
        ("npp", "", "npp: missing"),
        ("npp", "x" * 65, "npp: longer than 64 characters"),
        ("npp", "a\x00b", "npp: contains a NUL character"),
        ("status", "", "status: missing"),
        ("status", "active", "status: unknown status 'active'"),
        ("status", "SUSPENDED", "status: unknown status 'SUSPENDED'"),
        ("segment", "XX", "segment: unknown segment 'XX'"),
        ("programs", "JKK;JKM", "programs: unknown programme 'JKK;JKM'"),
        ("programs", "JKK||JKM", "programs: unknown programme ''"),
        ("programs", "JKK| JKM", "programs: unknown programme ' JKM'"),
        ("pds_flags", "WAGE", "pds_flags: unknown PDS flag 'WAGE'"),
        ("workers_enrolled", "", "workers_enrolled: missing"),
        ("workers_enrolled", "-1", "workers_enrolled: must be a whole number"),
        ("workers_enrolled", "1.5", "workers_enrolled: must be a whole number"),
        ("workers_enrolled", "+3", "workers_enrolled: must be a whole number"),
        ("workers_enrolled", " 3", "workers_enrolled: must be a whole number"),
        ("workers_enrolled", "10000001", "workers_enrolled: must be at most 10000000"),
        ("arrears_months", "1201", "arrears_months: must be at most 1200"),
        ("version", "9223372036854775808", "version: must be at most 9223372036854775807"),
        ("version", "9" * 5000, "version: must be at most"),
        ("sanction_requested", "yes", "sanction_requested: must be true or false"),
        ("sanction_requested", "", "sanction_requested: missing"),
        ("as_of", "", "as_of: missing"),
        ("as_of", "2025-06-30", "as_of: must be an RFC 3339 timestamp"),
        ("as_of", "2025-06-30T00:00:00", "as_of: must be an RFC 3339 timestamp"),
        ("as_of", "1751216400", "as_of: must be an RFC 3339 timestamp"),
        ("as_of", "2025-06-30T00:00:00+0700", "as_of: must be an RFC 3339 timestamp"),
        ("as_of", "2025-02-30T00:00:00Z", "as_of: not a valid date and time"),
        ("as_of", "2025-06-30T24:00:00Z", "as_of: not a valid date and time"),
        ("as_of", "2025-06-30T23:59:60Z", "as_of: not a valid date and time"),
        ("as_of", "2025-06-30T00:00:00+24:00", "as_of: offset out of range"),
        ("as_of", "0001-01-01T00:00:00+01:00", "as_of: out of range once in UTC"),
    ],
)
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


# --- agreement with the EnrolmentState model ----------------------------------------------------

# The CSV's own grammar for as_of (RFC 3339 date-time, with the case-insensitive T/Z and the
# space separator RFC 3339 allows), written independently of the module's.
RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
MODEL_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


def reference(row: dict[str, str]) -> EnrolmentState | None:
    """What the stream would accept: the cells turned into the record's JSON by the documented
    CSV rules, validated by EnrolmentState; plus the CSV's three documented restrictions."""
    data: dict[str, Any] = dict(row)
    for name in ("workers_enrolled", "arrears_months", "version"):
        if re.fullmatch(r"[0-9]{1,4000}", row[name]):
            data[name] = int(row[name])
    for name in ("programs", "pds_flags"):
        data[name] = row[name].split("|") if row[name] else []
    data["sanction_requested"] = MODEL_BOOLEANS.get(row["sanction_requested"].lower(), "?")
    try:
        state = EnrolmentState.model_validate_json(json.dumps(data))
    except ValidationError:
        return None
    if not RFC3339.fullmatch(row["as_of"]) or "\x00" in row["npp"]:
        return None
    try:
        state.as_of.astimezone(UTC)
    except OverflowError:
        return None
    return state


def decode(line: str) -> dict[str, Any]:
    """A staged COPY line back into values, as PostgreSQL will read it."""
    parts = line.split("\t")
    assert len(parts) == 13
    fields = dict(zip(FIELDS, parts[1:], strict=True))

    def unescape(text: str) -> str:
        escapes = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}
        return re.sub(r"\\[\\tnr]", lambda m: escapes[m.group()], text)

    def members(text: str) -> frozenset[str]:
        assert text[0] + text[-1] == "{}"
        inner = text[1:-1]
        return frozenset(inner.split(",")) if inner else frozenset()

    return {
        "nib": fields["nib"],
        "npwp": fields["npwp"],
        "npp": unescape(fields["npp"]),
        "status": fields["status"],
        "segment": fields["segment"],
        "programs": members(fields["programs"]),
        "workers_enrolled": int(fields["workers_enrolled"]),
        "arrears_months": int(fields["arrears_months"]),
        "pds_flags": members(fields["pds_flags"]),
        "sanction_requested": {"t": True, "f": False}[fields["sanction_requested"]],
        "as_of": datetime.fromisoformat(fields["as_of"]),
        "version": int(fields["version"]),
    }


def model_values(state: EnrolmentState) -> dict[str, Any]:
    return {
        "nib": state.nib,
        "npwp": state.npwp,
        "npp": state.npp,
        "status": state.status.value,
        "segment": state.segment.value,
        "programs": frozenset(p.value for p in state.programs),
        "workers_enrolled": state.workers_enrolled,
        "arrears_months": state.arrears_months,
        "pds_flags": frozenset(f.value for f in state.pds_flags),
        "sanction_requested": state.sanction_requested,
        "as_of": state.as_of,
        "version": state.version,
    }


# A file decoded as UTF-8 cannot hold a lone surrogate (that is a broken file, tested apart).
UTF8_CHARS = st.characters(exclude_categories=("Cs",))


def digits(low: int, high: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=low, max_size=high)


@st.composite
def npwp_cells(draw: st.DrawFn) -> str:
    head = draw(digits(8, 8))
    legacy = head + luhn.calc_check_digit(head) + draw(digits(6, 6))
    day = draw(st.integers(0, 75))
    nik = (
        draw(st.sampled_from(["7314", "3171", "1101", "0000", "9999", "7399"]))
        + draw(digits(2, 2))
        + f"{day:02d}{draw(st.integers(0, 13)):02d}"
        + draw(digits(2, 2))
        + draw(digits(4, 4))
    )
    return draw(
        st.sampled_from([legacy, "0" + legacy, nik, bad_check_digit(legacy, 3)])
        | digits(14, 17)
        | st.text(UTF8_CHARS, max_size=17)
    )


@st.composite
def as_of_cells(draw: st.DrawFn) -> str:
    def num(low: int, high: int, width: int) -> str:
        return f"{draw(st.integers(low, high)):0{width}d}"

    date = f"{num(0, 10000, 4)}-{num(0, 13, 2)}-{num(0, 32, 2)}"
    time_ = f"{num(0, 24, 2)}:{num(0, 60, 2)}:{num(0, 60, 2)}"
    fraction = draw(st.sampled_from(["", "."]) | digits(1, 12).map(lambda d: "." + d))
    separator = draw(st.sampled_from(["T", "t", " ", "_"]))
    offset = draw(
        st.sampled_from(["Z", "z", "", "+07", "+0700", "+07:00", "-00:00", "+24:00", "+07:60"])
        | st.builds(
            lambda sign, h, m: f"{sign}{h:02d}:{m:02d}",
            st.sampled_from("+-"),
            st.integers(0, 24),
            st.integers(0, 60),
        )
    )
    return draw(
        st.just(date + separator + time_ + fraction + offset)
        | st.sampled_from(["1751216400", "2025-06-30", "2025-06-30T00:00+07:00", ""])
        | st.text(UTF8_CHARS, max_size=30)
    )


def count_cells(high: int) -> st.SearchStrategy[str]:
    return (
        st.integers(-3, high + 3).map(str)
        | st.integers(0, high).map(lambda n: "00" + str(n))
        | st.sampled_from(["", "1.0", "+1", " 1", "1e3", "١", "²"])
        | st.integers(high - 3, high * 10 + 10).map(str)
    )


def list_cells(members: list[str]) -> st.SearchStrategy[str]:
    tokens = st.sampled_from([*members, "", "jkk", "X", f"{members[0]} "])
    return st.lists(tokens, max_size=6).map("|".join) | st.sampled_from(
        [";".join(members[:2]), ",".join(members[:2])]
    )


WILD = {
    "nib": digits(13, 13) | digits(12, 14) | st.text(UTF8_CHARS, max_size=14),
    "npwp": npwp_cells(),
    "npp": st.text(UTF8_CHARS, max_size=70)
    | st.sampled_from(["NPP1", "a\tb", "a\\b", "a\nb", "a\x00b", "", "😀" * 64]),
    "status": st.sampled_from(["ACTIVE", "INACTIVE", "NOT_REGISTERED", "active", "", "X"]),
    "segment": st.sampled_from(["PU", "BPU", "JAKON", "pu", "", "PU "]),
    "programs": list_cells(["JKK", "JKM", "JHT", "JP", "JKP"]),
    "workers_enrolled": count_cells(10_000_000),
    "arrears_months": count_cells(1200),
    "pds_flags": list_cells(["WORKERS", "WAGES", "PROGRAM"]),
    "sanction_requested": st.sampled_from(
        ["true", "false", "TRUE", "False", "1", "0", "yes", "", "t", "2"]
    ),
    "as_of": as_of_cells(),
    "version": count_cells(2**63 - 1) | digits(1, 25),
}


@st.composite
def valid_as_of(draw: st.DrawFn) -> str:
    offset = timedelta(minutes=draw(st.integers(-(24 * 60 - 1), 24 * 60 - 1)))
    moment = draw(st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)))
    local = moment.astimezone(timezone(offset))
    text = local.strftime("%Y-%m-%d") + draw(st.sampled_from("Tt ")) + local.strftime("%H:%M:%S")
    if local.microsecond or draw(st.booleans()):
        text += "." + f"{local.microsecond:06d}" + draw(digits(0, 3))
    if offset == timedelta(0) and draw(st.booleans()):
        return text + draw(st.sampled_from("Zz"))
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(offset) // timedelta(minutes=1)
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def valid_npwp(draw: st.DrawFn) -> str:
    head = draw(digits(8, 8))
    legacy = head + luhn.calc_check_digit(head) + draw(digits(6, 6))
    birth = draw(st.dates(datetime(1950, 1, 1).date(), datetime(2010, 12, 31).date()))
    day = birth.day + draw(st.sampled_from([0, 40]))
    nik = (
        draw(st.sampled_from(["7314", "3171", "1101", "3273"]))
        + draw(digits(2, 2))
        + f"{day:02d}{birth.month:02d}{birth.year % 100:02d}"
        + draw(digits(4, 4))
    )
    return draw(st.sampled_from([legacy, "0" + legacy, nik]))


def members(allowed: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(allowed), max_size=len(allowed) + 1).map("|".join)


VALID = {
    "nib": digits(13, 13),
    "npwp": valid_npwp(),
    "npp": st.from_regex(r"NPP[0-9]{8}", fullmatch=True)
    | st.text(
        st.characters(exclude_characters="\x00", exclude_categories=("Cs",)),
        min_size=1,
        max_size=64,
    ),
    "status": st.sampled_from(["ACTIVE", "INACTIVE", "NOT_REGISTERED"]),
    "segment": st.sampled_from(["PU", "BPU", "JAKON"]),
    "programs": members(["JKK", "JKM", "JHT", "JP", "JKP"]),
    "workers_enrolled": st.integers(0, 10_000_000).map(str),
    "arrears_months": st.integers(0, 1200).map(str),
    "pds_flags": members(["WORKERS", "WAGES", "PROGRAM"]),
    "sanction_requested": st.sampled_from(["true", "false", "TRUE", "False", "1", "0"]),
    "as_of": valid_as_of(),
    "version": (st.integers(0, 10**6) | st.integers(0, 2**63 - 1)).map(str),
}


@st.composite
def rows(draw: st.DrawFn) -> dict[str, str]:
    """A valid row with up to two fields drawn from the wild: most rows sit near the boundary
    between accepted and refused, where disagreements would hide."""
    row = {name: draw(strategy) for name, strategy in VALID.items()}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=2, unique=True)):
        row[name] = draw(WILD[name])
    return row


ROWS = rows()
AGREEMENT = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@AGREEMENT
@given(ROWS)
@example({**GOOD})
@example({**GOOD, "npwp": NIK})
@example({**GOOD, "as_of": "0001-01-01T00:00:00+01:00"})
@example({**GOOD, "npp": "a\x00b"})
def test_the_parser_agrees_with_the_model(row: dict[str, str]) -> None:
    parser = RowParser(FIELDS)
    expected = reference(row)
    try:
        line = parser.stage_line([row[f] for f in FIELDS], 9)
    except BadRow:
        assert expected is None, "refused a row the model accepts"
        return
    assert expected is not None, "accepted a row the model refuses"
    got = decode(line)
    want = model_values(expected)
    assert got == want


@AGREEMENT
@given(st.lists(ROWS, min_size=1, max_size=4))
def test_the_fast_path_says_what_the_checkers_say(rows: list[dict[str, str]]) -> None:
    # Caches fill as rows go by; whatever the fast path returns must be the checkers' answer.
    parser = RowParser(FIELDS)
    for row in rows:
        values = [row[f] for f in FIELDS]
        try:
            checked: str | None = parser._checked(values)
        except BadRow:
            checked = None
        fast = parser._fast(values)
        if fast is not None:
            assert fast == checked


# --- reading files (no database) ----------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.bad: list[tuple[int, str]] = []

    def reading(self, rows: int, done_bytes: int, total_bytes: int) -> None:
        assert 0 <= done_bytes <= total_bytes

    def rejected(self, line: int, reason: str) -> None:
        self.bad.append((line, reason))

    def merging(self, rows: int) -> None:
        pass


def feed(tmp_path: Path, content: bytes) -> tuple[list[str], Recorder]:
    path = tmp_path / "snapshot.csv"
    path.write_bytes(content)
    recorder = Recorder()
    source = enrolment_import._Source(path)
    rejects = enrolment_import._Rejects(tmp_path / "rejects.csv")
    try:
        data = b"".join(enrolment_import._Feed(source, path, rejects, recorder))
    finally:
        source.close()
        rejects.discard()
    return data.decode().splitlines(), recorder


def csv_bytes(*rows: list[str], header: tuple[str, ...] = FIELDS) -> bytes:
    return ("\r\n".join(",".join(r) for r in [list(header), *rows]) + "\r\n").encode()


def test_bom_crlf_and_blank_lines_are_tolerated(tmp_path: Path) -> None:
    content = b"\xef\xbb\xbf" + csv_bytes(cells()).replace(b"\r\n", b"\r\n\r\n", 1)
    lines, recorder = feed(tmp_path, content)
    assert [line.split("\t")[0] for line in lines] == ["3"]
    assert recorder.bad == []


def test_gzip_is_recognised_by_its_magic_bytes(tmp_path: Path) -> None:
    lines, _ = feed(tmp_path, gzip.compress(csv_bytes(cells(), cells(nib="9120001234568"))))
    assert len(lines) == 2


def test_a_quoted_field_spanning_lines_keeps_the_line_where_its_record_starts(
    tmp_path: Path,
) -> None:
    content = csv_bytes(cells(npp='"two\nlines"'), cells(nib="bad"))
    lines, recorder = feed(tmp_path, content)
    assert lines[0].split("\t")[3] == "two\\nlines"
    assert recorder.bad == [(4, "nib: must be 13 digits, got 'bad'")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"\n\n", "is empty"),
        (csv_bytes(), "has a header but no rows"),
        (csv_bytes(cells()).replace(b"PU", b"P\xe9", 1), "line 2: not UTF-8 text (byte 0xe9)"),
        (gzip.compress(csv_bytes(cells()))[:-12], "damaged or truncated gzip"),
        (b"PK\x03\x04rest", "is a zip archive"),
    ],
)
def test_broken_files(tmp_path: Path, content: bytes, message: str) -> None:
    with pytest.raises(BrokenFile, match=re.escape(message)):
        feed(tmp_path, content)


# --- the command line's pieces ------------------------------------------------------------------


def test_rejects_go_beside_the_file_by_default() -> None:
    assert default_rejects_path(Path("/data/s.csv.gz")) == Path("/data/s.csv.gz.rejects.csv")


def test_progress_lines_are_quiet_for_a_short_import_and_list_bad_rows() -> None:
    out = io.StringIO()
    progress = make_progress("auto", out)  # not a terminal: lines
    progress.reading(10, 50, 100)
    for line in range(2, 15):
        progress.rejected(line, "nib: missing")
    progress.merging(10)
    progress.close()
    text = out.getvalue().splitlines()
    assert text[:2] == ["line 2: nib: missing", "line 3: nib: missing"]
    assert len(text) == 11
    assert text[-1] == "... and 3 more bad row(s): see the rejects file"


def test_progress_bar_redraws_one_line() -> None:
    out = io.StringIO()
    progress = make_progress("bar", out)
    progress.reading(1000, 25, 100)
    progress.close()
    text = out.getvalue()
    assert text.startswith("\r[")
    assert "1,000 rows" in text
    assert "25%" in text
    assert text.endswith("\r\x1b[K")
    assert "\n" not in text


def test_progress_none_prints_only_bad_rows() -> None:
    out = io.StringIO()
    progress = make_progress("none", out)
    progress.reading(1000, 25, 100)
    progress.rejected(7, "status: missing")
    progress.merging(1000)
    progress.close()
    assert out.getvalue() == "line 7: status: missing\n"


def test_offsets_in_timestamps_are_real_offsets() -> None:
    assert parse_timestamp("2025-01-01T00:00:00-23:59").utcoffset() == -timedelta(
        hours=23, minutes=59
    )
    assert parse_timestamp("2025-01-01T00:00:00Z").tzinfo == timezone.utc  # noqa: UP017
