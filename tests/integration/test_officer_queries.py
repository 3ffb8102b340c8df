"""`ptsp-gate flagged` and `ptsp-gate employer` over the compliance projection: pages that join
up into the whole list, look-ups by NPWP and name, bad cursors and names, a statement timeout,
and a query cancelled on the server when the command is interrupted."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from ptsp_gate.adapters.postgres import connect
from ptsp_gate.contract.events import Action, ComplianceDecision, Outcome, Reason, ReasonCode
from ptsp_gate.stores.decisions import store_decisions
from tests.cli_helpers import console

pytestmark = pytest.mark.integration

T0 = datetime(2026, 2, 1, tzinfo=UTC)
NPWP = "012345678901234"


def _cli(dsn: str, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return console(*argv, env={**os.environ, "DATABASE_URL": dsn, **env})


def _nib(n: int) -> str:
    return f"91200000{n:05d}"


async def _history(db: asyncpg.Connection, employers: int) -> None:
    """One application per employer, in two regions; two in three blocked (ARREARS, or
    NOT_REGISTERED), the rest cleared. Names like "CV Maju 100%_7"."""
    decisions = []
    for n in range(employers):
        nib, region = _nib(n), ("7314", "3319")[n % 2]
        await db.execute(
            """
            INSERT INTO permit_application (event_id, application_id, action, nib, npwp,
                region_code, scale, workers_declared, submitted_at, payload)
            VALUES ($1, $2, 'NEW', $3, $4, $5, 'MIKRO', 0, $6, $7::jsonb)
            """,
            f"ev-{n}",
            f"OSS-{n}",
            nib,
            NPWP if n == 5 else f"01234567890{n:04d}",
            region,
            T0,
            {"employer": {"name": f"CV Maju 100%_{n}", "nib": nib}},
        )
        outcome = "CLEARED" if n % 3 == 2 else "BLOCKED"
        code = ReasonCode.ARREARS if n % 3 == 0 else ReasonCode.NOT_REGISTERED
        decisions.append(
            (
                ComplianceDecision(
                    decision_id=uuid.uuid4(),
                    application_id=f"OSS-{n}",
                    nib=nib,
                    action=Action.NEW,
                    region_code=region,
                    outcome=Outcome(outcome),
                    reasons=[Reason(code=code, message="-")] if outcome == "BLOCKED" else [],
                    enrolment_as_of=None,
                    policy_version="national-2026.1",
                    # Ties in first_flagged_at on purpose: the NIB orders them.
                    decided_at=T0 + timedelta(hours=n // 4),
                    supersedes=None,
                ),
                f"ev-{n}",
                None,
            )
        )
    async with db.transaction():
        await store_decisions(db, decisions, "decisions", "test")


async def test_pages_join_up_into_the_whole_list(db, db_dsn) -> None:
    await _history(db, 60)
    whole = await asyncio.to_thread(_cli, db_dsn, "flagged", "--format", "json")
    assert whole.returncode == 0, whole.stderr
    rows = json.loads(whole.stdout)
    assert len(rows) == 40
    assert [(r["region_code"], r["first_flagged_at"], r["nib"]) for r in rows] == sorted(
        (r["region_code"], r["first_flagged_at"], r["nib"]) for r in rows
    )
    lines = await asyncio.to_thread(_cli, db_dsn, "flagged", "--format", "jsonl")
    assert [json.loads(line) for line in lines.stdout.splitlines()] == rows

    paged, after, pages = [], [], 0
    while True:
        out = await asyncio.to_thread(
            _cli, db_dsn, "flagged", "--format", "json", "--limit", "7", *after
        )
        assert out.returncode == 0, out.stderr
        paged += json.loads(out.stdout)
        pages += 1
        if not out.stderr:
            break
        token = out.stderr.split("--after ")[1].strip()
        after = ["--after", token]
    assert paged == rows
    assert pages == 6

    region = await asyncio.to_thread(
        _cli, db_dsn, "flagged", "--region", "3319", "--reason", "ARREARS", "--format", "csv"
    )
    found = list(csv.DictReader(io.StringIO(region.stdout)))
    assert {r["nib"] for r in found} == {_nib(n) for n in range(60) if n % 6 == 3}
    assert all(r["employer_name"].startswith("CV Maju 100%_") for r in found)


async def test_a_cursor_it_did_not_print_is_one_line(db, db_dsn) -> None:
    out = await asyncio.to_thread(_cli, db_dsn, "flagged", "--limit", "5", "--after", "x' OR 1=1")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "ptsp-gate flagged: --after: not a cursor this program printed"
    ]


async def test_employers_are_found_by_name_and_npwp(db, db_dsn) -> None:
    await _history(db, 12)
    out = await asyncio.to_thread(
        _cli, db_dsn, "employer", "--name", "maju 100%_1", "--format", "json"
    )
    assert out.returncode == 0, out.stderr
    # % and _ are the name's own characters, not wildcards: "_1" then "_10", "_11".
    assert [r["nib"] for r in json.loads(out.stdout)] == [_nib(1), _nib(10), _nib(11)]

    out = await asyncio.to_thread(_cli, db_dsn, "employer", "--npwp", NPWP, "--format", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["nib"] == _nib(5)
    assert report["standing"]["employer_name"] == "CV Maju 100%_5"
    assert NPWP not in out.stdout

    out = await asyncio.to_thread(_cli, db_dsn, "employer", "--name", "Sentosa Abadi")
    assert (out.returncode, out.stdout) == (3, "No employer matches.\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--npwp", "01.234.567.8-901.234"], "is not a 15- or 16-digit NPWP"),
        (["--name", "ab"], "give 3 to 100 characters"),
        (["--name", "x" * 101], "give 3 to 100 characters"),
        (["9120000000001", "--name", "Maju"], "not allowed with argument"),
        ([], "one of the arguments"),
    ],
)
def test_bad_look_ups_are_usage_errors(argv, message) -> None:
    out = console("employer", *argv)
    assert out.returncode == 2
    assert message in out.stderr
    assert "01.234.567.8-901.234" not in out.stderr  # a tax number is not echoed


async def _blocking_lock(dsn: str) -> asyncpg.Connection:
    holder = await connect(dsn)
    await holder.execute("BEGIN; LOCK TABLE employer_compliance IN ACCESS EXCLUSIVE MODE")
    return holder


async def test_a_query_over_the_statement_timeout_is_cancelled_in_one_line(db, db_dsn) -> None:
    holder = await _blocking_lock(db_dsn)
    try:
        out = await asyncio.to_thread(_cli, db_dsn, "flagged", PTSP_GATE_STATEMENT_TIMEOUT_S="0.5")
    finally:
        await holder.close()
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "ptsp-gate flagged: a query ran longer than PTSP_GATE_STATEMENT_TIMEOUT_S (0.5 s) and "
        "PostgreSQL cancelled it; narrow the question or raise the setting"
    ]


async def _waiting_queries(db: asyncpg.Connection) -> int:
    # The command's own session: it names itself, and other tests' sessions on the same server
    # (in other databases) are not it.
    return await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = 'ptsp-gate flagged' AND datname = current_database()"
        " AND state = 'active'"
    )


async def test_an_interrupted_command_cancels_its_query_on_the_server(db, db_dsn) -> None:
    holder = await _blocking_lock(db_dsn)
    try:
        # As from a terminal: a shell that starts a job in the background has it ignore SIGINT,
        # and a child inherits that (CI may run the suite so); Python then leaves it ignored.
        interruptible = (
            "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from ptsp_gate.cli.main import main; raise SystemExit(main())"
        )
        process = subprocess.Popen(
            [sys.executable, "-c", interruptible, "flagged"],
            env={**os.environ, "DATABASE_URL": db_dsn},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Up to 30 s: on a loaded machine (three Kafka nodes beside the suite) the command's
        # start alone has taken more than 10.
        for _ in range(600):
            if await _waiting_queries(db) or process.poll() is not None:
                break
            await asyncio.sleep(0.05)
        assert process.poll() is None, process.communicate()
        assert await _waiting_queries(db) == 1
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.to_thread(process.communicate, timeout=60)
        assert process.returncode == 130, err
        assert "Traceback" not in err
        # The lock is still held: only a cancel request can have ended the query.
        for _ in range(100):
            if not await _waiting_queries(db):
                break
            await asyncio.sleep(0.05)
        assert await _waiting_queries(db) == 0
    finally:
        await holder.close()


async def test_the_csv_postgresql_writes_is_the_csv_python_writes(db, db_dsn) -> None:
    # The whole list comes from COPY, a page from the Python writer: the same cells either way,
    # hostile names and timestamps with and without microseconds included.
    await _history(db, 30)
    await db.execute(
        """
        UPDATE employer_compliance SET employer_name = '=cmd|'' /C calc''!A0',
            decided_at = decided_at + interval '0.000123 s'
        WHERE nib = $1
        """,
        _nib(0),
    )
    await db.execute(
        "UPDATE employer_compliance SET employer_name = '-2+3' WHERE nib = $1", _nib(1)
    )
    whole = await asyncio.to_thread(_cli, db_dsn, "flagged", "--format", "csv")
    paged = await asyncio.to_thread(_cli, db_dsn, "flagged", "--format", "csv", "--limit", "10000")
    assert whole.returncode == paged.returncode == 0, whole.stderr + paged.stderr
    assert whole.stdout == paged.stdout
    assert "'=cmd|" in whole.stdout
    assert ".000123+00:00" in whole.stdout
    await _projection_rebuilt(db)


async def _projection_rebuilt(db: asyncpg.Connection) -> None:
    from ptsp_gate.stores import compliance

    await compliance.rebuild(db)  # the test altered the projection by hand


async def test_an_npwp_is_found_in_either_form_and_from_standard_input(db, db_dsn) -> None:
    await _history(db, 8)
    sixteen = "0" + NPWP  # the same taxpayer, in the 16-digit form
    out = await asyncio.to_thread(
        lambda: subprocess.run(
            [sys.executable, "-m", "ptsp_gate.cli.main", "employer", "--npwp", "-"],
            input=sixteen + "\n",
            env={**os.environ, "DATABASE_URL": db_dsn},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"Employer {_nib(5)}")
    assert NPWP not in out.stdout + out.stderr

    empty = await asyncio.to_thread(
        lambda: subprocess.run(
            [sys.executable, "-m", "ptsp_gate.cli.main", "employer", "--npwp", "-"],
            input="not a number\n",
            env={**os.environ, "DATABASE_URL": db_dsn},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    )
    assert empty.returncode == 1
    assert empty.stderr.strip() == (
        "ptsp-gate employer: standard input holds no 15- or 16-digit NPWP"
    )


def test_a_number_pasted_where_the_nib_goes_is_not_echoed() -> None:
    out = console("employer", "0123456789012345")
    assert out.returncode == 2
    assert "0123456789012345" not in out.stderr
    assert "is not a 13-digit NIB" in out.stderr
