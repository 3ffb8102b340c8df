"""The bulk import against malformed, oversized and hostile files: the header and each record
have a size limit, reasons stay short and never echo an NPWP or NIK, and the rejects file does not
run formulas in a spreadsheet."""

from __future__ import annotations

import csv
import gzip
import re
import time
from pathlib import Path

import pytest

from ptsp_gate.enrolment_import import (
    FIELDS,
    MAX_HEADER_CELLS,
    MAX_RECORD_BYTES,
    BadRow,
    BrokenFile,
    read_header,
)
from ptsp_gate.enrolment_import.feed import Feed
from ptsp_gate.enrolment_import.reading import Source
from ptsp_gate.enrolment_import.rejects import Rejects

from .import_support import NIK, NPWP_15, PARSER, cells, csv_bytes, feed

TOO_LONG = "record longer than 1 MiB (1048576 bytes)"


def row_text(**changes: str) -> str:
    return ",".join(cells(**changes))


def digit_runs(text: str, at_least: int) -> list[str]:
    return re.findall(rf"\d{{{at_least},}}", text)


# --- the header ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        [f"col{i}" for i in range(40_000)],
        ["nib"] * 40_000,
        [*FIELDS, *([NIK] * 39_988)],
    ],
    ids=["distinct", "repeated", "identifiers"],
)
def test_a_header_of_40000_cells_is_refused_at_once_in_a_short_line(header: list[str]) -> None:
    start = time.perf_counter()
    with pytest.raises(BrokenFile) as caught:
        read_header(header)
    assert time.perf_counter() - start < 0.5  # was about 23 s: a quadratic duplicate check
    message = str(caught.value)
    assert message.startswith(
        f"wrong header: 40000 columns, more than the {MAX_HEADER_CELLS} a header may have"
    )
    assert len(message) < 300
    assert NIK not in message


def test_a_header_of_many_unknown_cells_names_a_few_and_counts_the_rest() -> None:
    header = [*FIELDS, *(f"extra{i}" for i in range(MAX_HEADER_CELLS - len(FIELDS)))]
    with pytest.raises(BrokenFile) as caught:
        read_header(header)
    message = str(caught.value)
    assert "unknown column(s) 'extra0', 'extra1', 'extra2', 'extra3', 'extra4' and 47 more" in (
        message
    )
    assert "extra5" not in message
    assert len(message) < 400


def test_a_header_at_the_cell_limit_is_checked_cell_by_cell() -> None:
    header = [*FIELDS, *(["nib"] * (MAX_HEADER_CELLS - len(FIELDS)))]
    with pytest.raises(BrokenFile, match=re.escape("repeated column(s) nib (expected")):
        read_header(header)
    with pytest.raises(BrokenFile, match="65 columns, more than the 64"):
        read_header([*header, "nib"])


def test_a_data_row_taken_for_a_header_does_not_echo_its_identifiers(tmp_path: Path) -> None:
    content = csv_bytes(cells(), header=tuple(cells(npwp=NIK)))
    with pytest.raises(BrokenFile) as caught:
        feed(tmp_path, content)
    message = str(caught.value)
    assert "'9120001234567'" in message  # a NIB is public and 13 digits: shown
    assert NIK not in message
    assert "'************0001'" in message
    assert digit_runs(message, 14) == []


def test_a_header_line_longer_than_the_limit_breaks_the_file(tmp_path: Path) -> None:
    long_header = ",".join(FIELDS) + "," + "x" * MAX_RECORD_BYTES
    content = (long_header + "\n" + row_text() + "\n").encode()
    with pytest.raises(BrokenFile, match=re.escape("line 1: the header is longer than 1 MiB")):
        feed(tmp_path, content)


def test_a_file_without_line_breaks_breaks_the_file(tmp_path: Path) -> None:
    content = (",".join(FIELDS) + ",").encode() + b"x," * (2 * MAX_RECORD_BYTES)
    with pytest.raises(BrokenFile, match="the header is longer than 1 MiB"):
        feed(tmp_path, content)


# --- records past the limit ---------------------------------------------------------------------


def test_the_tail_of_an_overlong_line_is_not_imported_as_a_row(tmp_path: Path) -> None:
    # The part beyond 1 MiB is itself a valid row: it must not be read as one.
    hidden = row_text(nib="9120001234599")
    padding = "x" * (MAX_RECORD_BYTES - 10)
    content = csv_bytes(
        cells(),
        [padding + "," + hidden],
        cells(nib="9120001234568"),
    )
    lines, recorder = feed(tmp_path, content)
    assert [line.split("\t")[:2] for line in lines] == [
        ["2", "9120001234567"],
        ["4", "9120001234568"],
    ]
    assert recorder.bad == [(3, f"{TOO_LONG}: line 3 skipped")]
    assert "9120001234599" not in "\n".join(lines)


def test_an_overlong_line_of_many_small_cells_is_one_bad_row(tmp_path: Path) -> None:
    content = csv_bytes(cells(), ["a"] * MAX_RECORD_BYTES, cells(nib="9120001234568"))
    lines, recorder = feed(tmp_path, gzip.compress(content))
    assert [line.split("\t")[0] for line in lines] == ["2", "4"]
    assert recorder.bad == [(3, f"{TOO_LONG}: line 3 skipped")]


def test_a_quoted_record_spanning_lines_past_the_limit_is_one_bad_row(tmp_path: Path) -> None:
    # Every field within the csv module's own limit, every line short: only the record is long.
    field = '"' + ("z" * 999 + "\n") * 100 + '"'
    content = csv_bytes(cells(), [field] * 12, cells(nib="9120001234568"))
    lines, recorder = feed(tmp_path, content)
    assert [line.split("\t")[0] for line in lines] == ["2"]
    first, reason = recorder.bad[0]
    assert first == 3
    assert re.fullmatch(re.escape(TOO_LONG) + r": lines 3-(\d+) skipped", reason)
    # reading went on after the line that took the record past the limit (what follows is the
    # rest of the broken record: bad rows, never a row taken from inside it)
    assert len(recorder.bad) > 1


def test_characters_split_by_the_limit_are_not_a_decoding_error(tmp_path: Path) -> None:
    content = csv_bytes(cells(), ["é" * MAX_RECORD_BYTES], cells(nib="9120001234568"))
    lines, recorder = feed(tmp_path, content)
    assert [line.split("\t")[0] for line in lines] == ["2", "4"]
    assert recorder.bad == [(3, f"{TOO_LONG}: line 3 skipped")]


@pytest.mark.parametrize(("extra", "refused_for_length"), [(0, False), (1, True)])
def test_the_limit_counts_the_bytes_of_the_record_with_its_line_break(
    tmp_path: Path, extra: int, refused_for_length: bool
) -> None:
    # Eleven extra cells, each within the csv module's field limit, fill the line to the byte.
    header = ",".join(FIELDS) + "\n"
    room = MAX_RECORD_BYTES + extra - len(row_text() + "\n") - 11
    pads = [room // 11] * 10 + [room - 10 * (room // 11)]
    line = ",".join([row_text(), *("p" * n for n in pads)]) + "\n"
    assert len(line.encode()) == MAX_RECORD_BYTES + extra
    content = (header + line + row_text(nib="9120001234568") + "\n").encode()
    lines, recorder = feed(tmp_path, content)
    assert [line.split("\t")[0] for line in lines] == ["3"]
    [(number, reason)] = recorder.bad
    assert number == 2
    assert reason == (
        f"{TOO_LONG}: line 2 skipped" if refused_for_length else "has 23 fields, the header has 12"
    )


# --- reasons ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("nib", NIK),
        ("nib", NPWP_15),
        ("nib", "01.234.567.8-901.000"),
        ("workers_enrolled", NIK),
        ("status", "pending " + NIK),
        ("as_of", NIK),
        ("sanction_requested", NIK),
        ("programs", f"JKK|{NIK}"),
        ("status", "x" * 30 + NIK + "y" * 30),  # the NIK runs across the cut
        ("status", "9" * 5000),
    ],
)
def test_reasons_mask_identifiers_as_the_logs_do(field: str, value: str) -> None:
    with pytest.raises(BadRow) as caught:
        PARSER.stage_line(cells(**{field: value}), 2)
    reason = str(caught.value)
    assert reason.startswith(f"{field}: ")
    assert NIK not in reason
    assert NIK[:10] not in reason
    assert "01.234.567" not in reason
    assert digit_runs(reason.split("got", 1)[-1], 5) == []  # what follows "got", if any
    assert digit_runs(reason, 14) == []
    assert len(reason) < 300


def test_a_nib_that_is_a_nik_is_shown_masked() -> None:
    with pytest.raises(BadRow) as caught:
        PARSER.stage_line(cells(nib=NIK), 2)
    assert str(caught.value) == "nib: must be 13 digits, got '************0001'"


def test_a_list_of_many_unknown_members_names_a_few() -> None:
    members = "|".join(f"P{i}" for i in range(5000))
    with pytest.raises(BadRow) as caught:
        PARSER.stage_line(cells(programs=members), 2)
    reason = str(caught.value)
    assert reason.startswith(
        "programs: unknown programme 'P0', 'P1', 'P2', 'P3', 'P4' and 4995 more (expected"
    )
    assert len(reason) < 300


def test_repeated_unknown_members_are_named_once() -> None:
    with pytest.raises(BadRow, match=re.escape("unknown programme 'X', 'Y' (expected")):
        PARSER.stage_line(cells(programs="X|JKK|Y|X|X"), 2)


def test_a_long_value_is_cut_in_its_reason() -> None:
    with pytest.raises(BadRow) as caught:
        PARSER.stage_line(cells(status="S" * 100_000), 2)
    assert str(caught.value).startswith("status: unknown status '" + "S" * 40 + "…'")
    assert len(str(caught.value)) < 200


# --- the rejects file ---------------------------------------------------------------------------

HOSTILE = ['=HYPERLINK("http://x")', "+1+1", "@SUM(A1)", "-2+3", "\t=1", "\r=1"]


def test_the_rejects_file_writes_formulas_as_text(tmp_path: Path) -> None:
    target = tmp_path / "rejects.csv"
    rejects = Rejects(target)
    rejects.set_header(["=cmd", *FIELDS[1:]])
    rejects.write(7, "status: unknown status '=1+1'", [*HOSTILE, "ordinary", "-", "", "7"])
    assert rejects.commit() == target
    with target.open(newline="") as f:
        header, row = list(csv.reader(f))
    assert header[:3] == ["line", "reason", "'=cmd"]
    assert row[0] == "7"  # a number: not touched
    assert row[1] == "status: unknown status '=1+1'"  # begins with a letter: not touched
    assert row[2:] == [*("'" + h for h in HOSTILE), "ordinary", "'-", "", "7"]


def test_an_import_writes_hostile_cells_of_bad_rows_as_text(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(csv_bytes(cells(status="=1+1", npp="@SUM(A1)"), cells(nib="9120001234568")))
    target = tmp_path / "rejects.csv"
    source = Source(path)
    rejects = Rejects(target)
    try:
        staged = b"".join(Feed(source, path, rejects, None)).decode().splitlines()
        rejects.commit()
    finally:
        source.close()
    assert len(staged) == 1
    with target.open(newline="") as f:
        _, row = list(csv.reader(f))
    assert row[0] == "2"
    assert row[2 + FIELDS.index("status")] == "'=1+1"
    assert row[2 + FIELDS.index("npp")] == "'@SUM(A1)"
    assert row[2 + FIELDS.index("nib")] == "9120001234567"
