from datetime import UTC, datetime

from ptsp_gate.reports import render

ROW = {
    "nib": "9120000000001",
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
