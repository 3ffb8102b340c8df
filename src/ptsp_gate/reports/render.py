"""Output formats for the officer commands: an aligned table for people, CSV for spreadsheets,
JSON for other programs."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from ptsp_gate.contract.identifiers import mask


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


# A spreadsheet runs a cell that begins with one of these as a formula (or, for tab and carriage
# return, strips them and then may): `=HYPERLINK(...)` in a reason or a region becomes a link or a
# command. The OWASP "CSV injection" practice is to put a single quote before such a cell, which
# makes it text. The rule, for every CSV this package writes (these reports, the import's rejects
# file): text is neutralised, numbers are not. A value that is an int, float or Decimal is written
# as the number it is, so a negative count stays `-3` and still sums; anything else (strings,
# lists of codes joined with commas, ...) is text, and gets the quote when it begins with one of
# these characters, `-2+3` included.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBERS = (int, float, Decimal)


def spreadsheet_text(text: str) -> str:
    """`text` as a CSV cell a spreadsheet shows rather than evaluates (see FORMULA_STARTS)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _csv_cell(value: Any) -> str:
    text = _cell(value)
    return text if isinstance(value, _NUMBERS) else spreadsheet_text(text)


def to_json(data: Any) -> str:
    return json.dumps(_plain(data), indent=2, ensure_ascii=False)


class _Rows:
    """What csv.writer writes (one call per row), each row ending in "\n" rather than "\r\n".

    The csv module quotes a cell for the line terminator's characters only: written with "\n", a
    cell holding a bare carriage return went out unquoted, and a spreadsheet started a new row
    there (`'\r=1` became `'` and a formula). Written with "\r\n", such a cell is quoted; the
    rows still end as scripts expect."""

    def __init__(self) -> None:
        self.out = io.StringIO()

    def write(self, row: str) -> int:
        return self.out.write(row.removesuffix("\r\n") + "\n")


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    # Spreadsheets and scripts get full timestamps with their offset; the table shortens them.
    out = _Rows()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(_plain(row.get(c))) for c in columns])
    return out.out.getvalue()


def to_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines) + "\n"


FLAGGED_COLUMNS = (
    "nib",
    "employer_name",
    "region_code",
    "reason_codes",
    "blocked_applications",
    "first_flagged_at",
    "last_flagged_at",
    "enrolment_as_of",
)


class TextRows:
    """Rows written as they are read, batch by batch, in constant memory: CSV, JSON (one array),
    JSON lines, or an aligned table (each batch aligned on its own)."""

    def __init__(
        self, fmt: str, columns: Sequence[str], headings: Sequence[str], noun: str
    ) -> None:
        self.fmt = fmt
        self.columns = list(columns)
        self.headings = list(headings)
        self.noun = noun  # "flagged employer", for the table's last line
        self.count = 0

    def begin(self) -> str:
        if self.fmt == "json":
            return "["
        if self.fmt == "csv":
            out = _Rows()
            csv.writer(out, lineterminator="\r\n").writerow(
                [spreadsheet_text(h) for h in self.headings]
            )
            return out.out.getvalue()
        return ""

    def rows(self, rows: Sequence[Any]) -> str:
        if not rows:
            return ""
        first = self.count == 0
        self.count += len(rows)
        dicts = [{c: r[c] for c in self.columns} for r in rows]
        if self.fmt == "json":
            items = ",\n  ".join(json.dumps(_plain(r), ensure_ascii=False) for r in dicts)
            return ("\n  " if first else ",\n  ") + items
        if self.fmt == "jsonl":
            return "".join(json.dumps(_plain(r), ensure_ascii=False) + "\n" for r in dicts)
        if self.fmt == "csv":
            return to_csv(dicts, self.columns).split("\n", 1)[1]
        table = to_table(
            [dict(zip(self.headings, r.values(), strict=True)) for r in dicts], self.headings
        )
        return table if first else table.split("\n", 2)[2]

    def end(self) -> str:
        if self.fmt == "json":
            return "\n]\n" if self.count else "]\n"
        if self.fmt == "table":
            if not self.count:
                return f"No {self.noun}s.\n"
            return f"\n{self.count} {self.noun}(s)\n"
        return ""


def flagged(rows: Sequence[dict[str, Any]], fmt: str) -> str:
    writer = TextRows(fmt, FLAGGED_COLUMNS, FLAGGED_COLUMNS, "flagged employer")
    return writer.begin() + writer.rows(rows) + writer.end()


MATCH_COLUMNS = (
    "nib",
    "employer_name",
    "region_code",
    "outcome",
    "reason_codes",
    "decided_at",
    "open_applications",
    "blocked_applications",
)


def matches(rows: Sequence[dict[str, Any]], fmt: str) -> str:
    """Employers found by NPWP or name: which NIB to ask about next."""
    if fmt == "json":
        return to_json(list(rows)) + "\n"
    if not rows:
        return "No employer matches.\n"
    found = f"\n{len(rows)} employer(s); ask `ptsp-gate employer NIB` about one\n"
    return to_table(rows, MATCH_COLUMNS) + found


EPISODE_COLUMNS = (
    "began_at",
    "region_code",
    "reason_codes",
    "ended_at",
    "ended_outcome",
    "ended_by",
)

DECISION_COLUMNS = (
    "decided_at",
    "application_id",
    "action",
    "outcome",
    "reason_codes",
    "policy_version",
)


def employer(report: dict[str, Any], fmt: str) -> str:
    enrolment = report["enrolment"]
    if enrolment is not None:
        # The officer needs to match identities, not to read the full tax number.
        enrolment = {**enrolment, "npwp": mask(enrolment["npwp"])}
    report = {**report, "enrolment": enrolment}
    if fmt == "json":
        return to_json(report) + "\n"
    lines = [f"Employer {report['nib']}"]
    if enrolment is None:
        lines.append("  Enrolment: no record from BPJS Ketenagakerjaan")
    else:
        for key in (
            "status",
            "segment",
            "programs",
            "workers_enrolled",
            "arrears_months",
            "pds_flags",
            "sanction_requested",
            "npp",
            "npwp",
            "as_of",
            "version",
        ):
            lines.append(f"  {key:<19} {_cell(enrolment[key])}")
    standing = report.get("standing")
    if standing is not None:
        lines.append("")
        lines.append("  Standing (latest decision):")
        for key in (
            "employer_name",
            "region_code",
            "outcome",
            "reason_codes",
            "decided_at",
            "flagged_since",
            "first_flagged_at",
            "open_applications",
            "blocked_applications",
        ):
            lines.append(f"  {key:<19} {_cell(standing[key])}")
    episodes = report.get("episodes") or []
    if episodes:
        lines.append("")
        lines.append(f"Flagged episodes ({len(episodes)}, newest first):")
        lines.append(to_table(episodes, EPISODE_COLUMNS).rstrip("\n"))
    lines.append("")
    decisions = report["decisions"]
    if not decisions:
        lines.append("No decisions.")
        return "\n".join(lines) + "\n"
    lines.append(f"Decisions ({len(decisions)}, newest first):")
    return "\n".join(lines) + "\n" + to_table(decisions, DECISION_COLUMNS)
