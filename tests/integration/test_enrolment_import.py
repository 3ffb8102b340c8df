"""`ptsp-gate enrolment import` against a real PostgreSQL, good files and bad rows: the import
function directly, and the command line in a subprocess for its summary and the rows it lists."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime

import pytest

from ptsp_gate import demo
from ptsp_gate.contract.events import EnrolmentState
from ptsp_gate.enrolment_import import FIELDS
from ptsp_gate.reports.render import spreadsheet_text
from ptsp_gate.stores import enrolments

from .import_support import acli, csv_text, record, run_import, stored, write

pytestmark = pytest.mark.integration


# --- good files ----------------------------------------------------------------------------------


async def test_a_good_file_is_imported(db, db_dsn, tmp_path) -> None:
    rows = [
        record(1, 3),
        record(2, 1, status="INACTIVE", programs="JP|JKK", pds_flags="WAGES|WORKERS"),
        record(3, 9, sanction_requested="TRUE", arrears_months=4, npp="NPP, with comma"),
    ]
    # Columns in another order than the record's: the header says which is which.
    path = write(tmp_path / "snapshot.csv", rows, header=tuple(reversed(FIELDS)))
    result = await run_import(db, path, region="7314")

    assert (result.rows_read, result.rows_applied, result.rows_stale, result.rows_rejected) == (
        3,
        3,
        0,
        0,
    )
    assert result.rejects_file is None
    assert not (tmp_path / "snapshot.csv.rejects.csv").exists()
    got = await stored(db)
    assert set(got) == {demo.nib(1), demo.nib(2), demo.nib(3)}
    two = got[demo.nib(2)]
    assert two["status"] == "INACTIVE"
    assert two["programs"] == ["JKK", "JP"]
    assert two["pds_flags"] == ["WAGES", "WORKERS"]
    assert two["as_of"] == datetime(2025, 6, 30, 8, 0, tzinfo=UTC)
    assert two["source"] == "import"
    assert two["source_event_id"] == f"import:{result.import_id}:3"
    three = got[demo.nib(3)]
    assert (three["sanction_requested"], three["arrears_months"], three["version"]) == (True, 4, 9)
    assert three["npp"] == "NPP, with comma"
    # What the stream's model would make of the same record is what the import stored.
    assert enrolments.from_row(three) == EnrolmentState.model_validate_json(
        json.dumps(
            {
                **record(3, 9, arrears_months=4, npp="NPP, with comma"),
                "programs": ["JKM", "JKK"],
                "workers_enrolled": 3,
                "arrears_months": 4,
                "pds_flags": [],
                "sanction_requested": True,
                "version": 9,
            }
        )
    )
    imp = await db.fetchrow("SELECT * FROM enrolment_import")
    assert imp["id"] == result.import_id
    assert imp["source_file"] == str(path.resolve())
    assert (imp["region_code"], imp["complete"]) == ("7314", False)
    assert (imp["rows_read"], imp["rows_applied"], imp["rows_stale"], imp["rows_rejected"]) == (
        3,
        3,
        0,
        0,
    )
    assert imp["redecisions"] == 0
    assert imp["started_at"] <= imp["finished_at"]
    assert await db.fetchval("SELECT count(*) FROM region_snapshot") == 0


async def test_gzip_is_recognised_by_content_not_name(db, tmp_path) -> None:
    rows = [record(n) for n in range(1, 2001)]
    path = write(tmp_path / "snapshot.csv", rows, gz=True)
    result = await run_import(db, path)
    assert (result.rows_read, result.rows_applied) == (2000, 2000)
    assert await db.fetchval("SELECT count(*) FROM employer_enrolment") == 2000


async def test_the_cli_prints_a_summary_and_exits_0(db, db_dsn, tmp_path) -> None:
    path = write(tmp_path / "s.csv.gz", [record(1), record(2)], gz=True)
    out = await acli(db_dsn, str(path), "--region", "7314")
    assert out.returncode == 0, out.stderr
    summary = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.stdout.splitlines())
    assert summary["file"] == str(path.resolve())
    assert summary["rows read"] == "2"
    assert summary["applied"] == "2"
    assert summary["rejected"] == "0"
    assert summary["re-decisions"] == "0"
    assert out.stderr == ""  # progress lines only after two seconds; nothing to report
    assert await db.fetchval("SELECT count(*) FROM enrolment_import") == 1


# --- bad rows ------------------------------------------------------------------------------------


BAD_ROWS: list[tuple[str, dict[str, str] | str, str]] = [
    ("bad NIB", record(101, nib="91200000001"), "nib: must be 13 digits"),
    ("bad NPWP check digit", record(102, npwp="013000667091000"), "npwp: check digit is wrong"),
    ("unknown status", record(103, status="SUSPENDED"), "status: unknown status 'SUSPENDED'"),
    ("negative count", record(104, workers_enrolled="-2"), "workers_enrolled: must be a whole"),
    ("bad date", record(105, as_of="2025-02-30T00:00:00Z"), "as_of: not a valid date and time"),
    ("date without offset", record(106, as_of="2025-06-30T00:00:00"), "as_of: must be an RFC"),
    ("missing field", record(107, npp=""), "npp: missing"),
    ("unknown programme", record(108, programs="JKK;JKM"), "programs: unknown programme"),
    ("wrong column count", f"{demo.nib(109)},{demo.npwp15(109)},NPP", "has 3 fields"),
    ("malformed quoting", f'{demo.nib(110)},"x"y,NPP', "malformed CSV"),
]


async def test_bad_rows_are_reported_and_the_good_ones_imported(db, db_dsn, tmp_path) -> None:
    lines = [",".join(FIELDS)]
    for i, (_, bad, _) in enumerate(BAD_ROWS):
        good = record(i + 1)
        lines.append(",".join(good[f] for f in FIELDS))
        lines.append(bad if isinstance(bad, str) else ",".join(bad[f] for f in FIELDS))
    path = tmp_path / "mixed.csv"
    path.write_text("\n".join(lines) + "\n")
    rejects = tmp_path / "out" / "bad.csv"
    rejects.parent.mkdir()

    out = await acli(db_dsn, str(path), "--rejects", str(rejects), "--progress", "none")
    assert out.returncode == 0, out.stderr
    assert "rejected      10" in out.stdout
    assert f"rejects file  {rejects}" in out.stdout
    reported = out.stderr.splitlines()
    assert len(reported) == 10
    for i, (name, _, reason) in enumerate(BAD_ROWS):
        assert reported[i].startswith(f"line {2 * i + 3}: {reason}"), (name, reported[i])

    with rejects.open(newline="") as f:
        written = list(csv.reader(f))
    assert written[0] == ["line", "reason", *FIELDS]
    assert [int(r[0]) for r in written[1:]] == [2 * i + 3 for i in range(len(BAD_ROWS))]
    for row, (name, bad, reason) in zip(written[1:], BAD_ROWS, strict=True):
        assert row[1].startswith(reason), name
        if isinstance(bad, dict):
            # as written, but as text for a spreadsheet: "-2" comes back as "'-2"
            assert row[2:] == [spreadsheet_text(bad[f]) for f in FIELDS], name
    assert written[9][2:] == [demo.nib(109), demo.npwp15(109), "NPP"]

    assert await db.fetchval("SELECT count(*) FROM employer_enrolment") == len(BAD_ROWS)
    imp = await db.fetchrow("SELECT * FROM enrolment_import")
    assert (imp["rows_read"], imp["rows_applied"], imp["rows_rejected"]) == (20, 10, 10)


async def test_bad_rows_beyond_the_first_ten_are_counted_on_stderr(db_dsn, tmp_path) -> None:
    rows = [record(n, nib="x") for n in range(1, 16)] + [record(99)]
    path = write(tmp_path / "s.csv", rows)
    out = await acli(db_dsn, str(path), "--progress", "none")
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines()[-1] == "... and 5 more bad row(s): see the rejects file"
    assert (tmp_path / "s.csv.rejects.csv").read_text().count("\n") == 16


async def test_a_file_of_only_bad_rows_commits_the_count(db, tmp_path) -> None:
    path = write(tmp_path / "s.csv", [record(1, status="X"), record(2, status="Y")])
    result = await run_import(db, path)
    assert (result.rows_read, result.rows_applied, result.rows_rejected) == (2, 0, 2)
    assert await db.fetchval("SELECT rows_rejected FROM enrolment_import") == 2


async def test_hostile_rows_are_refused_without_echoing_identifiers_or_formulas(
    db, db_dsn, tmp_path
) -> None:
    def line(row: dict[str, str]) -> str:
        return csv_text([row]).splitlines()[1]

    nik = "7314015505900001"
    rows = [
        line(record(1)),
        "x" * (1 << 20) + "," + line(record(97)),  # a valid row beyond 1 MiB on line 3
        line(record(2, nib=nik)),
        line(record(3, status='=HYPERLINK("http://x")', npp="@SUM(A1)")),
        line(record(4, workers_enrolled="-2+3")),
        line(record(5)),
    ]
    path = tmp_path / "hostile.csv"
    path.write_text(",".join(FIELDS) + "\n" + "\n".join(rows) + "\n")

    out = await acli(db_dsn, str(path), "--progress", "none")
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [
        "line 3: record longer than 1 MiB (1048576 bytes): line 3 skipped",
        "line 4: nib: must be 13 digits, got '************0001'",
        "line 5: status: unknown status '=HYPERLINK(\"http://x\")' (expected one of ACTIVE, "
        "INACTIVE, NOT_REGISTERED)",
        "line 6: workers_enrolled: must be a whole number from 0 to 10000000, got '-2+3'",
    ]
    assert nik not in out.stderr
    stored_nibs = [r["nib"] for r in await db.fetch("SELECT nib FROM employer_enrolment")]
    assert sorted(stored_nibs) == [demo.nib(1), demo.nib(5)]  # not demo.nib(97)

    with (tmp_path / "hostile.csv.rejects.csv").open(newline="") as f:
        written = {int(r[0]): r[2:] for r in list(csv.reader(f))[1:]}
    assert written[3] == []
    assert written[4][0] == nik  # the rejects file is the file's own data, for fixing
    assert written[5][FIELDS.index("status")] == '\'=HYPERLINK("http://x")'
    assert written[5][FIELDS.index("npp")] == "'@SUM(A1)"
    assert written[6][FIELDS.index("workers_enrolled")] == "'-2+3"
    assert written[6][FIELDS.index("nib")] == demo.nib(4)
