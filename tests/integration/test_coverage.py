"""`ptsp-gate coverage` against a history whose figures were worked out by hand, and the
spreadsheet exports of the officers' reports."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from ptsp_gate.contract.events import Action, ComplianceDecision, Outcome, Reason, ReasonCode
from ptsp_gate.stores import coverage
from ptsp_gate.stores.decisions import store_decisions
from tests.cli_helpers import console

pytestmark = pytest.mark.integration

NOW = datetime(2026, 4, 1, tzinfo=UTC)  # the re-decision window (90 days) starts on 1 January


def _cli(dsn: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return console(*argv, env={**os.environ, "DATABASE_URL": dsn})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class History:
    def __init__(self, db: asyncpg.Connection) -> None:
        self.db = db
        self.n = 0

    async def apply(self, who: str, region: str, submitted: str, name: str | None = None) -> str:
        self.n += 1
        event_id = f"ev-{self.n}"
        nib = f"91200000{ord(who[0]):05d}"
        await self.db.execute(
            """
            INSERT INTO permit_application (event_id, application_id, action, nib, npwp,
                region_code, scale, workers_declared, submitted_at, payload)
            VALUES ($1, $2, 'NEW', $3, '012345678901234', $4, 'MIKRO', 0, $5, $6::jsonb)
            """,
            event_id,
            f"OSS-{self.n}",
            nib,
            region,
            at(submitted),
            {"employer": {"name": name or f"CV {who}", "nib": nib}},
        )
        return event_id

    async def decide(
        self,
        event_id: str,
        outcome: str,
        when: str,
        codes: tuple[ReasonCode, ...] = (),
        supersedes: uuid.UUID | None = None,
    ) -> uuid.UUID:
        row = await self.db.fetchrow(
            "SELECT application_id, nib, region_code FROM permit_application WHERE event_id = $1",
            event_id,
        )
        decision = ComplianceDecision(
            decision_id=uuid.uuid4(),
            application_id=row["application_id"],
            nib=row["nib"],
            action=Action.NEW,
            region_code=row["region_code"],
            outcome=Outcome(outcome),
            reasons=[Reason(code=c, message="-") for c in codes],
            enrolment_as_of=None,
            policy_version="national-2026.1",
            decided_at=at(when),
            supersedes=supersedes,
        )
        async with self.db.transaction():
            await store_decisions(self.db, [(decision, event_id, None)], "decisions", "test")
        return decision.decision_id


ARREARS, NOT_REGISTERED = ReasonCode.ARREARS, ReasonCode.NOT_REGISTERED


async def _scenario(db: asyncpg.Connection) -> None:
    h = History(db)
    # 7314, January (WIB): A cleared after 20 days, B after 50, C's new application came out
    # PENDING (ended otherwise), F cleared at once.
    a = await h.apply("A", "7314", "2026-01-04")
    first = await h.decide(a, "BLOCKED", "2026-01-05", (ARREARS,))
    await h.decide(a, "CLEARED", "2026-01-25", supersedes=first)
    b = await h.apply("B", "7314", "2026-01-09")
    first = await h.decide(b, "BLOCKED", "2026-01-10", (ARREARS, NOT_REGISTERED))
    await h.decide(b, "CLEARED", "2026-03-01", supersedes=first)
    c = await h.apply("C", "7314", "2026-01-14")
    await h.decide(c, "BLOCKED", "2026-01-15", (NOT_REGISTERED,))
    c2 = await h.apply("C", "7314", "2026-01-19")
    await h.decide(c2, "PENDING", "2026-01-20", (ReasonCode.ENROLMENT_UNKNOWN,))
    f = await h.apply("F", "7314", "2026-01-21")
    await h.decide(f, "CLEARED", "2026-01-22")
    # 7314, February (WIB): D, flagged at 03:00 WIB on 1 February (20:00 UTC the day before),
    # still flagged: its application is within the window. G's event was REJECTED.
    d = await h.apply("D", "7314", "2026-01-31T19:00:00")
    await h.decide(d, "BLOCKED", "2026-01-31T20:00:00", (ARREARS,))
    g = await h.apply("G", "7314", "2026-02-10")
    await h.decide(g, "REJECTED", "2026-02-10", (ReasonCode.INVALID_EVENT,))
    # 3319, January: E flagged, its application submitted before the window: expired.
    e = await h.apply("E", "3319", "2025-12-20")
    await h.decide(e, "BLOCKED", "2026-01-03", (ARREARS,))


def _question(by: str = "month", region: str | None = None) -> coverage.Question:
    return coverage.Question(
        since=at("2026-01-01"),
        until=at("2026-04-01"),
        by=by,
        timezone="Asia/Jakarta",
        region=region,
        window_days=90,
        now=NOW,
    )


async def test_coverage_matches_the_figures_worked_out_by_hand(db) -> None:
    await _scenario(db)
    async with db.transaction(isolation="repeatable_read", readonly=True):
        rows = [f.row() for f in await coverage.report(db, _question())]
    got = {(r["region_code"], r["period"].strftime("%Y-%m")): r for r in rows}
    assert sorted(got) == [("3319", "2026-01"), ("7314", "2026-01"), ("7314", "2026-02")]

    january = got[("7314", "2026-01")]
    assert {k: v for k, v in january.items() if k.startswith("applications")} == {
        "applications_cleared": 1,
        "applications_blocked": 3,
        "applications_pending": 1,
        "applications_rejected": 0,
    }
    assert (january["employers_flagged"], january["flag_episodes"]) == (3, 3)
    assert (
        january["cleared_within_30d"],
        january["cleared_within_60d"],
        january["cleared_within_90d"],
        january["cleared"],
    ) == (1, 2, 2, 2)
    assert january["median_days_to_clear"] == 35.0
    assert (january["ended_otherwise"], january["still_flagged"], january["expired"]) == (1, 0, 0)
    assert january["top_reasons"] == ["ARREARS 2", "NOT_REGISTERED 2"]

    february = got[("7314", "2026-02")]
    assert (february["applications_blocked"], february["applications_rejected"]) == (1, 1)
    assert (february["employers_flagged"], february["still_flagged"], february["expired"]) == (
        1,
        1,
        0,
    )
    assert february["median_days_to_clear"] is None

    elsewhere = got[("3319", "2026-01")]
    assert (elsewhere["employers_flagged"], elsewhere["still_flagged"], elsewhere["expired"]) == (
        1,
        0,
        1,
    )

    async with db.transaction(isolation="repeatable_read", readonly=True):
        quarter = [f.row() for f in await coverage.report(db, _question("quarter", "7314"))]
    assert len(quarter) == 1
    q1 = quarter[0]
    assert (q1["applications_blocked"], q1["employers_flagged"], q1["cleared"]) == (4, 4, 2)
    assert (q1["ended_otherwise"], q1["still_flagged"]) == (1, 1)


async def test_the_command_reports_the_same_in_every_format(db, db_dsn, tmp_path: Path) -> None:
    await _scenario(db)
    window = ("--from", "2026-01-01", "--to", "2026-04-01")
    out = await asyncio.to_thread(_cli, db_dsn, "coverage", *window, "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [(r["region_code"], r["period"]) for r in rows] == [
        ("3319", "2026-01"),
        ("7314", "2026-01"),
        ("7314", "2026-02"),
    ]
    assert rows[1]["cleared_within_60d"] == 2

    out = await asyncio.to_thread(
        _cli, db_dsn, "coverage", *window, "--by", "quarter", "--labels", "id", "--format", "csv"
    )
    header, *lines = out.stdout.splitlines()
    assert header.startswith("Kode Wilayah,Periode,Permohonan Lolos")
    assert [line.split(",")[:2] for line in lines] == [["3319", "2026-Q1"], ["7314", "2026-Q1"]]

    sheet = tmp_path / "cakupan.xlsx"
    out = await asyncio.to_thread(
        _cli,
        db_dsn,
        "coverage",
        *window,
        "--format",
        "xlsx",
        "--labels",
        "id",
        "--output",
        str(sheet),
    )
    assert out.returncode == 0, out.stderr
    assert "3 row(s) written to" in out.stderr
    assert "Lolos dalam 30 Hari" in _sheet_xml(sheet)
    assert oct(sheet.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "2026-05-01", "--to", "2026-04-01"], "--from must come before --to"),
        (["--from", "2000-01-01", "--to", "2026-01-01"], "ten years at most"),
        (["--format", "xlsx"], "--format xlsx needs --output"),
    ],
)
async def test_questions_it_cannot_answer_are_one_line(db_dsn, argv, message) -> None:
    out = await asyncio.to_thread(_cli, db_dsn, "coverage", *argv)
    assert out.returncode == 1
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--timezone", "Mars/Olympus"], "is not a time zone name"),
        (["--from", "yesterday"], "is not an ISO date"),
        (["--by", "week"], "invalid choice"),
        (["--region", "73"], "is not a 4-digit region code"),
    ],
)
def test_bad_arguments_are_usage_errors(argv, message) -> None:
    out = console("coverage", *argv)
    assert out.returncode == 2
    assert message in out.stderr


def _sheet_xml(path: Path) -> str:
    with zipfile.ZipFile(path) as book:
        return book.read("xl/worksheets/sheet1.xml").decode()


async def test_a_flagged_spreadsheet_holds_text_never_formulas(db, db_dsn, tmp_path) -> None:
    h = History(db)
    hostile = '=HYPERLINK("http://x","klik")'
    event = await h.apply("H", "7314", "2026-03-01", name=hostile)
    await h.decide(event, "BLOCKED", "2026-03-02", (ARREARS,))
    sheet = tmp_path / "ditandai.xlsx"
    out = await asyncio.to_thread(
        _cli, db_dsn, "flagged", "--format", "xlsx", "--labels", "id", "--output", str(sheet)
    )
    assert out.returncode == 0, out.stderr
    xml = _sheet_xml(sheet)
    assert "<f>" not in xml  # no formula anywhere
    assert "HYPERLINK" in xml  # the name is there, as text
    assert "Nama Pelaku Usaha" in xml

    # An interrupted or failed export leaves no file behind, and an earlier one intact.
    out = await asyncio.to_thread(
        _cli, db_dsn, "flagged", "--format", "xlsx", "--output", str(tmp_path / "no" / "x.xlsx")
    )
    assert out.returncode == 1
    assert "no directory" in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ditandai.xlsx"]


async def test_the_gauges_count_per_region(db) -> None:
    await _scenario(db)
    regions = await coverage.regions_now(db, now=NOW, days=90, window_days=90)
    assert regions == [
        # E is flagged, but its application left the window: not counted as flagged now.
        coverage.RegionNow("3319", 0, 1, 0, None),
        coverage.RegionNow("7314", 1, 4, 2, 35.0),
    ]
