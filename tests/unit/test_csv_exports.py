"""Every CSV the commands write keeps a spreadsheet from running a cell as a formula: text that
begins with =, +, -, @, a tab or a carriage return gets a leading quote; numbers stay numbers."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from ptsp_gate.cli import dlq_list
from ptsp_gate.reports import render
from ptsp_gate.reports.simulate import CHANGE_COLUMNS, Change, Simulation
from ptsp_gate.reports.simulate import render as render_simulation

NOW = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)
HOSTILE = ['=HYPERLINK("http://x")', "+1+1", "@SUM(A1)", "-2+3", "\t=1", "\r=1"]
ORDINARY = ["7314", "ARREARS", "a=b", "x-1", "", " =1", "'quoted"]


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("text", HOSTILE)
def test_text_that_a_spreadsheet_would_run_gets_a_quote(text: str) -> None:
    assert render.spreadsheet_text(text) == "'" + text


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_untouched(text: str) -> None:
    assert render.spreadsheet_text(text) == text


def test_numbers_stay_numbers_and_text_is_neutralised() -> None:
    row: dict[str, Any] = {
        "int": -3,
        "float": -2.5,
        "decimal": Decimal("-1.25"),
        "bool": True,
        "none": None,
        "text": "-3",
        "list": ["=X", "B"],
        "when": NOW,
    }
    out = parse(render.to_csv([row], list(row)))
    assert out == [
        {
            "int": "-3",
            "float": "-2.5",
            "decimal": "-1.25",
            "bool": "True",
            "none": "",
            "text": "'-3",
            "list": "'=X,B",
            "when": NOW.isoformat(),
        }
    ]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_flagged_csv(hostile: str) -> None:
    row = {
        "nib": "9120000000001",
        "employer_name": hostile,
        "region_code": hostile,
        "reason_codes": [hostile, "ARREARS"],
        "blocked_applications": 2,
        "first_flagged_at": NOW,
        "last_flagged_at": NOW,
        "enrolment_as_of": None,
    }
    ordinary = {
        **row,
        "nib": "9120000000002",
        "employer_name": "CV Baik",
        "region_code": "7314",
        "reason_codes": ["ARREARS"],
    }
    [bad, good] = parse(render.flagged([row, ordinary], "csv"))
    assert bad["region_code"] == "'" + hostile
    assert bad["employer_name"] == "'" + hostile
    assert bad["reason_codes"] == "'" + hostile + ",ARREARS"
    assert bad["blocked_applications"] == "2"
    assert good == {
        "nib": "9120000000002",
        "employer_name": "CV Baik",
        "region_code": "7314",
        "reason_codes": "ARREARS",
        "blocked_applications": "2",
        "first_flagged_at": NOW.isoformat(),
        "last_flagged_at": NOW.isoformat(),
        "enrolment_as_of": "",
    }


def _change(application_id: str, region: str = "7314") -> Change:
    return Change(
        application_id=application_id,
        nib="9120000000001",
        region_code=region,
        submitted_at=NOW,
        stored_outcome=None,
        current_outcome="CLEARED",
        candidate_outcome="BLOCKED",
        current_reason_codes=(),
        candidate_reason_codes=("ARREARS",),
        current_policy_version="national-2026.1",
        candidate_policy_version="-1",
    )


def test_simulate_csv() -> None:
    # application_id is any printable ASCII without spaces in the contract: all of these pass.
    result = Simulation(now=NOW)
    hostile = [h for h in HOSTILE if h.isprintable() and " " not in h]
    result.changes = [_change(h) for h in hostile] + [_change("APP-7314-000001")]
    rows = parse(render_simulation(result, "csv"))
    assert list(rows[0]) == list(CHANGE_COLUMNS)
    by_id = {r["application_id"]: r for r in rows}
    assert set(by_id) == {"'" + h for h in hostile} | {"APP-7314-000001"}
    ordinary = by_id["APP-7314-000001"]
    assert ordinary["stored_outcome"] == ""
    assert ordinary["candidate_reason_codes"] == "ARREARS"
    assert ordinary["candidate_policy_version"] == "'-1"  # text, though it looks like a number


def _dlq_row(**values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(dlq_list.LIST_COLUMNS)
    row.update(
        address="apps.dlq/0/7",
        dlq_topic="apps.dlq",
        dlq_partition=0,
        dlq_offset=7,
        failed_at=NOW,
        error_code="SCHEMA_VIOLATION",
        source_topic="apps",
        source_partition=2,
        source_offset=41,
        size=120,
    )
    row.update(values)
    return row


@pytest.mark.parametrize("hostile", HOSTILE)
def test_dlq_list_csv(hostile: str) -> None:
    rows = [
        _dlq_row(error_message=hostile, key=hostile, event_id=hostile),
        _dlq_row(error_message="application_id: field required", key="9120000000001"),
    ]
    [bad, good] = parse(dlq_list.render_list(rows, "csv", None, filtered=False))
    assert bad["error_message"] == bad["key"] == bad["event_id"] == "'" + hostile
    assert (bad["dlq_partition"], bad["dlq_offset"], bad["size"]) == ("0", "7", "120")
    assert good["error_message"] == "application_id: field required"
    assert good["key"] == "9120000000001"
    assert good["failed_at"] == NOW.isoformat()


def test_rows_end_in_a_line_feed_and_a_carriage_return_in_a_cell_is_quoted() -> None:
    # Unquoted, a bare carriage return ends the row in a spreadsheet: `'` on one row and the
    # formula on the next.
    text = render.to_csv([{"a": "\r=1", "b": "x\ry", "c": 1}, {"a": "z", "c": -3}], ["a", "b", "c"])
    assert text == 'a,b,c\n"\'\r=1","x\ry",1\nz,,-3\n'
