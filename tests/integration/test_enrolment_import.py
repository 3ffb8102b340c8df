"""`ptsp-gate enrolment import` against a real PostgreSQL: the import function directly, and the
command line in a subprocess for exit codes and one-line errors."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import os
import random
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ptsp_gate import demo
from ptsp_gate.adapters.postgres import connect
from ptsp_gate.config import Settings
from ptsp_gate.contract.events import EnrolmentState, EnrolmentStatus, PdsFlag, Program, Segment
from ptsp_gate.embedded import harness
from ptsp_gate.enrolment_import import (
    FIELDS,
    BrokenFile,
    ImportFailed,
    ImportResult,
    Redecider,
    import_snapshot,
)
from ptsp_gate.policy import load_policy_book
from ptsp_gate.reports.render import spreadsheet_text
from ptsp_gate.stores import enrolments

from .conftest import eventually
from .support import decisions, read_topic, send, services

pytestmark = pytest.mark.integration

AS_OF = datetime(2025, 6, 30, 8, 0, tzinfo=UTC)


def record(n: int, version: int = 1, **changes: Any) -> dict[str, str]:
    """One CSV row (all cells text) for employer n."""
    row = {
        "nib": demo.nib(n),
        "npwp": demo.npwp15(n),
        "npp": f"NPP{n:08d}",
        "status": "ACTIVE",
        "segment": "PU",
        "programs": "JKK|JKM",
        "workers_enrolled": "3",
        "arrears_months": "0",
        "pds_flags": "",
        "sanction_requested": "false",
        "as_of": "2025-06-30T15:00:00+07:00",
        "version": str(version),
    }
    row.update({k: str(v) for k, v in changes.items()})
    return row


def csv_text(rows: list[dict[str, str]], header: tuple[str, ...] = FIELDS) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        writer.writerow([r[f] for f in header])
    return out.getvalue()


def write(path: Path, rows: list[dict[str, str]], *, gz: bool = False, **kw: Any) -> Path:
    data = csv_text(rows, **kw).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def redecider(settings: Settings | None = None) -> Redecider:
    s = settings or Settings()
    return Redecider(
        policies=load_policy_book(s.policy_dir),
        window_days=s.redecide_window_days,
        decisions_topic=s.topic_decisions,
        event_source=s.event_source,
    )


async def run_import(
    db: asyncpg.Connection, path: Path, settings: Settings | None = None, **kw: Any
) -> ImportResult:
    kw.setdefault("rejects_file", path.with_name(path.name + ".rejects.csv"))
    return await import_snapshot(db, path, redecider=redecider(settings), **kw)


def cli(dsn: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ptsp_gate.cli.main", "enrolment", "import", *argv],
        env={**os.environ, "DATABASE_URL": dsn},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def acli(dsn: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, dsn, *argv)


async def stored(db: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    rows = await db.fetch("SELECT * FROM employer_enrolment ORDER BY nib")
    return {r["nib"]: r for r in rows}


async def everything(db: asyncpg.Connection) -> tuple[Any, ...]:
    """What an import may change, to show that a failed one changed nothing."""
    return (
        [tuple(r) for r in await db.fetch("SELECT * FROM employer_enrolment ORDER BY nib")],
        [tuple(r) for r in await db.fetch("SELECT * FROM enrolment_import ORDER BY id")],
        [tuple(r) for r in await db.fetch("SELECT * FROM region_snapshot ORDER BY region_code")],
        await db.fetchval("SELECT count(*) FROM compliance_decision"),
        await db.fetchval("SELECT count(*) FROM outbox"),
    )


def state(n: int, version: int, npp: str = "STREAM", **changes: Any) -> EnrolmentState:
    values: dict[str, Any] = {
        "nib": demo.nib(n),
        "npwp": demo.npwp15(n),
        "npp": npp,
        "status": EnrolmentStatus.ACTIVE,
        "segment": Segment.PU,
        "programs": frozenset({Program.JKK, Program.JKM}),
        "workers_enrolled": 3,
        "arrears_months": 0,
        "pds_flags": frozenset[PdsFlag](),
        "sanction_requested": False,
        "as_of": AS_OF,
        "version": version,
    }
    values.update(changes)
    return EnrolmentState.model_construct(**values)


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


# --- broken files: exit 1, one line, nothing changed ---------------------------------------------


def _good() -> bytes:
    return csv_text([record(n) for n in range(1, 3001)]).encode()


BROKEN: list[tuple[str, bytes, str]] = [
    (
        "wrong header",
        _good().replace(b"workers_enrolled", b"workers", 1),
        "wrong header: unknown column(s) 'workers'; missing column(s) workers_enrolled",
    ),
    ("unknown column", _good().replace(b"version\n", b"version,region\n", 1), "'region'"),
    ("no header", _good().split(b"\n", 1)[1], "wrong header"),
    ("truncated gzip", gzip.compress(_good())[:-2000], "damaged or truncated gzip"),
    ("corrupt gzip", gzip.compress(_good())[:5000] + b"\x00" * 64, "damaged or truncated gzip"),
    (
        "latin-1 bytes",
        _good()[:200_000] + "PT Maju Jaya Perkasa Tbk, café\n".encode("latin-1"),
        "not UTF-8 text (byte 0xe9)",
    ),
    ("empty file", b"", "is empty"),
    ("header only", csv_text([]).encode(), "has a header but no rows"),
    ("zip archive", b"PK\x03\x04" + _good()[:100], "is a zip archive"),
    (
        "header of 40,000 cells",
        b",".join([b"col"] * 40_000) + b"\n" + _good().split(b"\n", 1)[1],
        "wrong header: 40000 columns, more than the 64 a header may have",
    ),
    (
        "header over 1 MiB",
        b"nib," + b"x" * (2 << 20) + b"\n" + _good().split(b"\n", 1)[1],
        "line 1: the header is longer than 1 MiB (1048576 bytes)",
    ),
]


@pytest.mark.parametrize(
    ("content", "message"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
async def test_a_broken_file_fails_in_one_line_and_changes_nothing(
    db, db_dsn, tmp_path, content: bytes, message: str
) -> None:
    # Some earlier state, which a broken file must leave exactly as it was.
    await run_import(db, write(tmp_path / "before.csv", [record(1, 0), record(5000)]))
    before = await everything(db)
    path = tmp_path / "broken.csv"
    path.write_bytes(content)

    out = await acli(db_dsn, str(path), "--progress", "none")
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("ptsp-gate enrolment: ")
    assert message in lines[0]
    assert lines[0].endswith("; nothing was imported")
    assert await everything(db) == before
    assert not (tmp_path / "broken.csv.rejects.csv").exists()


async def test_a_latin1_file_names_the_line(db, tmp_path) -> None:
    rows = [record(n) for n in range(1, 6)]
    rows[3]["npp"] = "NPP-é"
    path = tmp_path / "latin.csv"
    path.write_bytes(csv_text(rows).encode("latin-1"))
    with pytest.raises(BrokenFile, match=r"^line 5: not UTF-8 text \(byte 0xe9\)"):
        await run_import(db, path)
    assert await db.fetchval("SELECT count(*) FROM employer_enrolment") == 0


async def test_a_broken_file_keeps_an_earlier_rejects_file(db, tmp_path) -> None:
    earlier = tmp_path / "s.csv.rejects.csv"
    earlier.write_text("from an earlier run\n")
    good = csv_text([record(1, status="X"), *[record(n) for n in range(2, 3000)]]).encode()
    path = tmp_path / "s.csv"
    path.write_bytes(gzip.compress(good)[:-100])
    with pytest.raises(BrokenFile):
        await run_import(db, path)
    assert earlier.read_text() == "from an earlier run\n"
    assert {p.name for p in tmp_path.iterdir()} == {"s.csv", "s.csv.rejects.csv"}


async def test_missing_file_and_unmigrated_database(server_dsn, db_dsn, tmp_path) -> None:
    missing = tmp_path / "nope.csv"
    out = await acli(db_dsn, str(missing))
    assert (out.returncode, out.stderr) == (1, f"ptsp-gate enrolment: {missing}: no such file\n")

    bare = await harness.create_database(server_dsn, "ptsp_gate_bare")
    try:
        path = write(tmp_path / "s.csv", [record(1)])
        out = await acli(bare, str(path))
        assert out.returncode == 1
        assert out.stderr == (
            "ptsp-gate enrolment: database schema is behind: run `ptsp-gate migrate`\n"
        )
    finally:
        await harness.drop_database(server_dsn, bare)


# --- the version rule ----------------------------------------------------------------------------


async def test_duplicate_nibs_in_a_file_newest_version_wins(db, tmp_path) -> None:
    rows = [
        record(1, 3, npp="v3"),
        record(1, 5, npp="v5"),
        record(1, 4, npp="v4"),
        record(2, 7, npp="first of equal versions"),
        record(2, 7, npp="second of equal versions"),
        record(3, 1, npp="only"),
    ]
    result = await run_import(db, write(tmp_path / "dup.csv", rows))
    assert (result.rows_read, result.rows_applied, result.rows_stale) == (6, 3, 3)
    got = await stored(db)
    assert (got[demo.nib(1)]["npp"], got[demo.nib(1)]["version"]) == ("v5", 5)
    assert got[demo.nib(2)]["npp"] == "first of equal versions"
    assert got[demo.nib(1)]["source_event_id"] == f"import:{result.import_id}:3"


async def test_a_file_older_than_the_stream_is_stale_and_a_newer_one_applies(db, tmp_path) -> None:
    async with db.transaction():
        applied = await enrolments.apply_newer(
            db, [state(1, 10), state(2, 10)], "stream", ["e1", "e2"]
        )
    assert applied == {demo.nib(1), demo.nib(2)}

    older = write(tmp_path / "old.csv", [record(1, 9, npp="FILE"), record(2, 10, npp="FILE")])
    result = await run_import(db, older)
    assert (result.rows_applied, result.rows_stale) == (0, 2)
    got = await stored(db)
    assert {r["npp"] for r in got.values()} == {"STREAM"}
    assert {r["source"] for r in got.values()} == {"stream"}

    newer = write(tmp_path / "new.csv", [record(1, 11, npp="FILE"), record(3, 1, npp="FILE")])
    result = await run_import(db, newer)
    assert (result.rows_applied, result.rows_stale) == (2, 0)
    got = await stored(db)
    assert (got[demo.nib(1)]["npp"], got[demo.nib(1)]["source"]) == ("FILE", "import")
    assert got[demo.nib(2)]["npp"] == "STREAM"

    # And the stream's rule holds the other way: an older streamed version leaves the import's.
    async with db.transaction():
        assert await enrolments.apply_newer(db, [state(1, 10)], "stream", ["e3"]) == set()


async def test_reimporting_the_same_file_changes_nothing_but_the_log(db, tmp_path) -> None:
    path = write(tmp_path / "s.csv", [record(n, 2) for n in range(1, 51)])
    await run_import(db, path)
    before = (await everything(db))[0]
    again = await run_import(db, path)
    assert (again.rows_applied, again.rows_stale, again.redecisions) == (0, 50, 0)
    assert (await everything(db))[0] == before
    assert await db.fetchval("SELECT count(*) FROM enrolment_import") == 2


# --- complete snapshots --------------------------------------------------------------------------


async def test_complete_records_the_region_snapshot(db, db_dsn, tmp_path) -> None:
    rows = [
        record(1, as_of="2025-06-29T10:00:00+07:00"),
        record(2, as_of="2025-06-30T23:30:00+08:00"),  # the latest: 15:30 UTC
        record(3, as_of="2025-06-30T12:00:00Z"),
    ]
    path = write(tmp_path / "7314.csv", rows)
    out = await acli(db_dsn, str(path), "--region", "7314", "--complete")
    assert out.returncode == 0, out.stderr
    snap = await db.fetchrow("SELECT * FROM region_snapshot WHERE region_code = '7314'")
    assert snap["complete_as_of"] == datetime(2025, 6, 30, 15, 30, tzinfo=UTC)
    assert snap["source_file"] == str(path.resolve())
    assert snap["rows_in_file"] == 3
    assert "complete      region 7314 as of 2025-06-30T15:30:00+00:00" in out.stdout
    imp = await db.fetchrow("SELECT region_code, complete FROM enrolment_import")
    assert tuple(imp) == ("7314", True)

    # An older complete snapshot imported later does not move the region's date back.
    older = write(tmp_path / "older.csv", [record(1, as_of="2025-05-31T00:00:00Z")])
    result = await run_import(db, older, region="7314", complete=True)
    assert not result.snapshot_recorded
    assert result.complete_as_of == datetime(2025, 6, 30, 15, 30, tzinfo=UTC)
    assert await db.fetchval("SELECT source_file FROM region_snapshot") == str(path.resolve())

    newer = write(tmp_path / "newer.csv", [record(1, 2, as_of="2025-07-31T00:00:00Z")])
    result = await run_import(db, newer, region="7314", complete=True)
    assert result.snapshot_recorded
    assert await db.fetchval("SELECT complete_as_of FROM region_snapshot") == datetime(
        2025, 7, 31, tzinfo=UTC
    )


async def test_complete_needs_a_region(db, db_dsn, tmp_path) -> None:
    path = write(tmp_path / "s.csv", [record(1)])
    out = await acli(db_dsn, str(path), "--complete")
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == (
        "ptsp-gate enrolment: --complete needs --region "
        "(the region the snapshot lists completely)\n"
    )
    with pytest.raises(ImportFailed, match="--complete needs --region"):
        await run_import(db, path, complete=True)
    assert await db.fetchval("SELECT count(*) FROM employer_enrolment") == 0


async def test_complete_with_rejected_rows_imports_nothing(db, db_dsn, tmp_path) -> None:
    path = write(tmp_path / "s.csv", [record(1), record(2, status="GONE"), record(3)])
    before = await everything(db)
    out = await acli(db_dsn, str(path), "--region", "7314", "--complete", "--progress", "none")
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert lines[0].startswith("line 3: status: unknown status 'GONE'")
    assert lines[1].startswith("ptsp-gate enrolment: --complete: 1 row(s) rejected")
    assert len(lines) == 2
    assert await everything(db) == before
    # The list of rows to fix is there all the same.
    assert "GONE" in (tmp_path / "s.csv.rejects.csv").read_text()


# --- concurrent with the stream ------------------------------------------------------------------


async def test_import_and_stream_concurrently_end_with_the_newest_version(
    db, db_dsn, tmp_path
) -> None:
    rng = random.Random(7)
    employers = range(1, 20_001)
    # Even versions come by file, odd ones by stream: whichever is higher must win.
    file_version = {n: rng.randrange(2, 41, 2) for n in employers}
    path = write(
        tmp_path / "s.csv", [record(n, v, npp=f"FILE-{v}") for n, v in file_version.items()]
    )
    stream_max: dict[int, int] = {}
    import_done = asyncio.Event()
    batches_during_import = 0

    async def stream() -> None:
        nonlocal batches_during_import
        conn = await connect(db_dsn)
        try:
            rounds_after = 0
            while rounds_after < 3:
                if import_done.is_set():
                    rounds_after += 1
                # Batches in arrival order, not NIB order: the import must cope with deadlocks.
                batch = rng.sample(list(employers), 500)
                versions = {n: rng.randrange(1, 42, 2) for n in batch}
                while True:
                    try:
                        async with conn.transaction():
                            await enrolments.apply_newer(
                                conn,
                                [state(n, v, npp=f"STREAM-{v}") for n, v in versions.items()],
                                "stream",
                                [None] * len(versions),
                            )
                        break
                    except asyncpg.DeadlockDetectedError:
                        continue  # what enrolment-sync does: retry the batch
                for n, v in versions.items():
                    stream_max[n] = max(stream_max.get(n, 0), v)
                if not import_done.is_set():
                    batches_during_import += 1
                await asyncio.sleep(0)
        finally:
            await conn.close()

    async def importer() -> ImportResult:
        try:
            return await run_import(db, path)
        finally:
            import_done.set()

    streaming = asyncio.create_task(stream())
    await asyncio.sleep(0.05)
    result = await importer()
    await streaming

    assert batches_during_import > 0
    got = await stored(db)
    assert len(got) == len(employers)
    wrong = []
    for n in employers:
        newest = max(file_version[n], stream_max.get(n, 0))
        row = got[demo.nib(n)]
        want = (newest, f"FILE-{newest}" if newest % 2 == 0 else f"STREAM-{newest}")
        if (row["version"], row["npp"]) != want:
            wrong.append((n, (row["version"], row["npp"]), want))
    assert wrong == []
    assert result.rows_applied + result.rows_stale == len(employers)


async def test_the_import_survives_a_deadlock_with_the_stream(db, db_dsn, tmp_path) -> None:
    async with db.transaction():
        await enrolments.apply_newer(db, [state(n, 1) for n in (1, 2, 3)], "stream", [None] * 3)
    path = write(tmp_path / "s.csv", [record(n, 10, npp="FILE") for n in (1, 2, 3)])
    stream = await connect(db_dsn)
    watcher = await connect(db_dsn)
    try:
        try:
            # Only the import's backend looks for the deadlock, so the import is the victim.
            await stream.execute("SET deadlock_timeout = '60s'")
        except asyncpg.InsufficientPrivilegeError:
            pytest.skip("steering deadlock detection needs a superuser")
        batch = stream.transaction()
        await batch.start()
        await enrolments.apply_newer(stream, [state(3, 5)], "stream", [None])
        importing = asyncio.create_task(run_import(db, path))

        async def import_waits_for_a_lock() -> bool:
            event = await watcher.fetchval(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1",
                db.get_server_pid(),
            )
            return str(event) == "Lock"

        await eventually(import_waits_for_a_lock, timeout=10, interval=0.01)
        # The import holds NIBs 1 and 2 and waits for 3; the batch now wants 1: a deadlock.
        await enrolments.apply_newer(stream, [state(1, 6)], "stream", [None])
        await batch.commit()
        result = await importing
    finally:
        await stream.close()
        await watcher.close()
    assert (result.rows_applied, result.rows_stale) == (3, 0)
    got = await stored(db)
    assert {(r["version"], r["npp"]) for r in got.values()} == {(10, "FILE")}


# --- re-decisions --------------------------------------------------------------------------------


async def test_an_import_that_enrols_a_blocked_employer_clears_it_once(
    settings, producer, bootstrap, db, tmp_path
) -> None:
    now = datetime.now(UTC)
    as_of = (now - timedelta(days=1)).isoformat()
    n = 4242
    async with services(settings, "permit-checker"):
        # Known to BPJS TK as not registered: the application is BLOCKED.
        first = write(
            tmp_path / "v1.csv",
            [record(n, 1, status="NOT_REGISTERED", programs="", as_of=as_of)],
        )
        await run_import(db, first, settings)
        application = demo.application(n, workers=3, now=now)
        await send(producer, settings.topic_applications, [demo.application_record(application)])

        async def decided() -> Any:
            return await db.fetchrow(
                "SELECT decision_id, outcome FROM compliance_decision WHERE application_id = $1",
                application["application_id"],
            )

        blocked = await eventually(decided)
        assert blocked["outcome"] == "BLOCKED"

        enrolled = write(tmp_path / "v2.csv", [record(n, 2, as_of=as_of)])
        result = await run_import(db, enrolled, settings)
        assert (result.rows_applied, result.redecisions) == (1, 1)
        # Replays and no-op changes produce nothing more.
        assert (await run_import(db, enrolled, settings)).redecisions == 0
        same = write(tmp_path / "v3.csv", [record(n, 3, as_of=as_of)])
        again = await run_import(db, same, settings)
        assert (again.rows_applied, again.redecisions) == (1, 0)

        records = await read_topic(bootstrap, settings.topic_decisions, 2)
    published = decisions(records)
    assert [d["outcome"] for d in published] == ["BLOCKED", "CLEARED"]
    assert published[1]["supersedes"] == str(blocked["decision_id"])
    rows = await db.fetch(
        "SELECT outcome, supersedes FROM compliance_decision WHERE application_id = $1 "
        "ORDER BY seq",
        application["application_id"],
    )
    assert [(r["outcome"], r["supersedes"]) for r in rows] == [
        ("BLOCKED", None),
        ("CLEARED", blocked["decision_id"]),
    ]
    assert await db.fetchval("SELECT sum(redecisions) FROM enrolment_import") == 1


async def test_import_rows_and_freshness_reach_the_enrolment_sync_metrics(settings, db) -> None:
    import asyncio
    import contextlib
    from datetime import UTC, datetime

    from ptsp_gate import demo
    from ptsp_gate.contract.events import EnrolmentState
    from ptsp_gate.observability.metrics import Metrics
    from ptsp_gate.stores import enrolments
    from ptsp_gate_enrolment_sync.projection_metrics import projection_metrics_refresher

    await db.execute(
        "INSERT INTO enrolment_import (source_file, region_code, complete, rows_read,"
        " rows_applied, rows_stale, rows_rejected, redecisions, started_at, finished_at)"
        " VALUES ('a.csv', NULL, false, 10, 7, 2, 1, 3, now(), now()),"
        "        ('b.csv', '7314', true, 5, 5, 0, 0, 1, now(), now())"
    )
    now = datetime.now(UTC)
    states = [
        EnrolmentState.model_validate_json(json.dumps(demo.enrolment(n, age_days=age, now=now)))
        for n, age in ((1, 2), (2, 30), (3, 200))
    ]
    await enrolments.apply_newer(db, states, "stream", [None] * len(states))
    from ptsp_gate.adapters.postgres import create_pool

    pool = await create_pool(settings.dsn(), 2)
    metrics = Metrics()
    task = asyncio.create_task(
        projection_metrics_refresher(pool, metrics, max_age_days=90, every_s=0.05)
    )
    try:
        for _ in range(100):
            if metrics.import_redecisions._value.get() == 4:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pool.close()
    assert metrics.import_rows.labels("applied")._value.get() == 12
    assert metrics.import_rows.labels("stale")._value.get() == 2
    assert metrics.import_rows.labels("rejected")._value.get() == 1
    assert metrics.import_redecisions._value.get() == 4
    assert metrics.enrolment_records.labels("fresh")._value.get() == 2
    assert metrics.enrolment_records.labels("stale")._value.get() == 1
    newest = metrics.enrolment_newest_as_of._value.get()
    assert abs(newest - states[0].as_of.timestamp()) < 1
