"""The bulk import's version rule (the stream's: newest wins, whichever path wrote first) and
complete regional snapshots."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ptsp_gate import demo
from ptsp_gate.enrolment_import import ImportFailed
from ptsp_gate.stores import enrolments

from .import_support import acli, everything, record, run_import, state, stored, write

pytestmark = pytest.mark.integration


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
