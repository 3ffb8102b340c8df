import json
from datetime import UTC, datetime

import pytest

from ptsp_gate.reports import labels, render

ROW = {
    "nib": "9120000000001",
    "employer_name": "CV Contoh",
    "region_code": "7314",
    "reason_codes": ["ARREARS", "PDS_WAGES"],
    "blocked_applications": 2,
    "first_flagged_at": datetime(2026, 11, 1, 8, 0, tzinfo=UTC),
    "last_flagged_at": datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
    "enrolment_as_of": None,
}


def test_flagged_table_csv_json() -> None:
    table = render.flagged([ROW], "table")
    assert "9120000000001" in table
    assert "ARREARS,PDS_WAGES" in table
    assert table.strip().endswith("1 flagged employer(s)")
    csv_text = render.flagged([ROW], "csv")
    assert csv_text.splitlines()[0] == ",".join(render.FLAGGED_COLUMNS)
    assert '"ARREARS,PDS_WAGES"' in csv_text
    assert "2026-11-01T08:00:00+00:00" in csv_text
    assert '"reason_codes": [' in render.flagged([ROW], "json")
    assert render.flagged([], "table") == "No flagged employers.\n"
    assert render.flagged([], "json").strip() == "[]"


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "table"])
def test_rows_written_in_batches_are_the_rows_written_at_once(fmt: str) -> None:
    rows = [{**ROW, "nib": f"91200000000{n:02d}"} for n in range(7)]
    whole = render.flagged(rows, fmt)
    writer = render.TextRows(
        fmt, render.FLAGGED_COLUMNS, render.FLAGGED_COLUMNS, "flagged employer"
    )
    parts = writer.begin() + "".join(writer.rows(rows[i : i + 3]) for i in range(0, 7, 3))
    parts += writer.end()
    if fmt == "json":
        assert json.loads(parts) == json.loads(whole)
    elif fmt == "table":  # each batch is aligned on its own
        assert parts.count("9120000000") == whole.count("9120000000") == 7
    else:
        assert parts == whole


def test_headings_in_indonesian_and_english() -> None:
    assert labels.headings(["nib", "employer_name"], "id") == ["NIB", "Nama Pelaku Usaha"]
    assert labels.headings(["nib", "employer_name"], "en") == ["NIB", "Employer name"]
    assert labels.headings(["nib", "employer_name"], "fields") == ["nib", "employer_name"]
    csv_text = render.TextRows("csv", ["nib"], labels.headings(["nib"], "id"), "x").begin()
    assert csv_text == "NIB\n"


def test_employer_masks_the_npwp() -> None:
    report = {
        "nib": "9120000000001",
        "decisions": [],
        "enrolment": {
            "status": "ACTIVE",
            "segment": "PU",
            "programs": ["JKK"],
            "workers_enrolled": 1,
            "arrears_months": 0,
            "pds_flags": [],
            "sanction_requested": False,
            "npp": "N1",
            "npwp": "013000666091000",
            "as_of": datetime(2026, 1, 1, tzinfo=UTC),
            "version": 1,
        },
    }
    for fmt in ("table", "json"):
        out = render.employer(report, fmt)
        assert "013000666091000" not in out
        assert "1000" in out


def test_every_report_column_has_its_labels() -> None:
    from ptsp_gate.cli.coverage import COLUMNS as COVERAGE_COLUMNS

    for columns in (render.FLAGGED_COLUMNS, COVERAGE_COLUMNS):
        for language in ("id", "en"):
            assert all(
                h != c for h, c in zip(labels.headings(columns, language), columns, strict=True)
            )
