"""`ptsp-gate policy simulate` on a real PostgreSQL: which applications it re-decides, what it
counts, and that it changes nothing in the database or on Kafka."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from ptsp_gate import demo
from ptsp_gate.adapters.postgres import connect
from ptsp_gate.cli import policy
from ptsp_gate.cli.common import CommandError
from ptsp_gate.config import Settings
from ptsp_gate.contract.events import EnrolmentState
from ptsp_gate.embedded import harness
from ptsp_gate.stores import compliance, enrolments
from ptsp_gate.stores.applications import read_only

from ..cli_helpers import console, counts, transitions, write
from .conftest import PARTITIONS
from .support import decide_scenarios

pytestmark = pytest.mark.integration

REPO_POLICIES = Path(__file__).resolve().parents[2] / "policies"
STRICT = 'version = "strict-1"\narrears_tolerance_months = 0\n'


async def enrol(db: asyncpg.Connection, n: int, now: datetime, **changes: Any) -> None:
    state = EnrolmentState.model_validate_json(json.dumps(demo.enrolment(n, now=now, **changes)))
    await enrolments.apply_newer(db, [state], "test", [None])


async def store(
    db: asyncpg.Connection,
    app: dict[str, Any],
    outcome: str | None,
    codes: tuple[str, ...] = (),
    *,
    event_id: str | None = None,
    received_at: datetime | None = None,
) -> None:
    """An accepted application event and the decision made on it, as permit-checker stores them
    (only the columns simulate reads are meaningful)."""
    event_id = event_id or f"evt-{uuid.uuid4()}"
    employer = app["employer"]
    await db.execute(
        """
        INSERT INTO permit_application (event_id, application_id, action, nib, npwp, region_code,
            scale, workers_declared, submitted_at, received_at, payload)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce($10, now()), $11)
        """,
        event_id,
        app["application_id"],
        app["action"],
        employer["nib"],
        employer["npwp"],
        app["region_code"],
        employer["scale"],
        employer["workers_declared"],
        datetime.fromisoformat(app["submitted_at"]),
        received_at,
        app,
    )
    if outcome is not None:
        await decision(db, app, outcome, codes, event_id=event_id)


async def decision(
    db: asyncpg.Connection,
    app: dict[str, Any],
    outcome: str,
    codes: tuple[str, ...] = (),
    *,
    event_id: str,
) -> None:
    await db.execute(
        """
        INSERT INTO compliance_decision (decision_id, event_id, application_id, nib, action,
            region_code, outcome, reason_codes, reasons, policy_version, decided_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '[]'::jsonb, 'national-2026.1', now())
        """,
        uuid.uuid4(),
        event_id,
        app["application_id"],
        app["employer"]["nib"],
        app["action"],
        app["region_code"],
        outcome,
        list(codes),
    )
    # History written by hand: the projection is rebuilt from it as `projection rebuild` does.
    await compliance.rebuild(db)


async def simulate(
    capsys: pytest.CaptureFixture[str],
    settings: Settings,
    candidate: Path,
    *,
    region: str | None = None,
    since: datetime | None = None,
) -> dict[str, Any]:
    args = argparse.Namespace(
        action="simulate", policy=str(candidate), region=region, since=since, format="json"
    )
    capsys.readouterr()
    assert await policy.run(args, settings) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def blocked(report: dict[str, Any]) -> list[tuple[str, str, int, list[str]]]:
    return [
        (e["nib"], e["region_code"], e["applications"], e["new_reason_codes"])
        for e in report["newly_blocked"]
    ]


# --- what is re-decided, and how it is counted ---------------------------------------------------


async def test_stricter_arrears_tolerance(db, db_dsn, tmp_path, capsys) -> None:
    now = datetime.now(UTC)
    for n, arrears in ((1, 1), (2, 2), (3, 0), (4, 4), (6, 1), (7, 1), (8, 1), (9, 1)):
        await enrol(db, n, now, arrears=arrears)
    a1 = demo.application(1, now=now)
    await store(db, a1, "CLEARED")
    # a later invalid resend is answered REJECTED; the application's standing is still CLEARED
    await decision(db, a1, "REJECTED", ("INVALID_EVENT",), event_id="evt-bad-resend")
    a2 = demo.application(2, now=now)
    await store(db, a2, "CLEARED")
    await store(db, {**a2, "application_id": "APP-7314-000002-B"}, "CLEARED")
    # stored BLOCKED, but the employer has paid since: drift, which is not the policy's doing
    await store(db, demo.application(3, now=now), "BLOCKED", ("ARREARS",))
    await store(db, demo.application(4, now=now), "BLOCKED", ("ARREARS",))
    await store(
        db,
        demo.application(5, scale="KECIL", workers=5, now=now),
        "PENDING",
        ("ENROLMENT_UNKNOWN",),
    )
    await store(db, demo.application(6, region="3201", now=now), "CLEARED")
    await store(db, demo.application(7, now=now - timedelta(days=400)), "CLEARED")
    # two events of one application in one consumer batch (same received_at): the one decided
    # last is the latest, although its event id sorts first
    a8 = demo.application(8, now=now)
    batch_time = now - timedelta(minutes=5)
    await store(db, a8, "CLEARED", event_id="zzz-first", received_at=batch_time)
    a8_resent = {**a8, "employer": {**a8["employer"], "workers_declared": 10}}
    await store(
        db, a8_resent, "BLOCKED", ("PDS_WORKERS",), event_id="aaa-second", received_at=batch_time
    )
    # a resend moved this application from 7314 to 3201: it is judged where it now is
    a9 = demo.application(9, now=now)
    await store(db, a9, "CLEARED", received_at=now - timedelta(hours=1))
    await store(db, {**a9, "region_code": "3201"}, "CLEARED")
    # accepted once, no longer readable (a check digit the contract now refuses)
    a10 = demo.application(10, now=now)
    await store(db, {**a10, "employer": {**a10["employer"], "npwp": "0"}}, "CLEARED")

    candidate = write(tmp_path, "strict.toml", STRICT)
    settings = Settings(database_url=db_dsn, policy_dir=None)
    report = await simulate(capsys, settings, candidate)
    assert report["applications"] == 10
    assert report["unreadable_applications"] == [a10["application_id"]]
    assert report["policy_versions"] == [
        {"current": "national-2026.1", "candidate": "strict-1", "applications": 10}
    ]
    assert counts(report) == (
        "BLOCKED->BLOCKED 2, CLEARED->BLOCKED 6, CLEARED->CLEARED 1, PENDING->PENDING 1; "
        "changed 7: outcome 6, reasons only 1; "
        "drift 1, no stored decision 0: BLOCKED->CLEARED 1"
    )
    assert blocked(report) == [
        (demo.nib(6), "3201", 1, ["ARREARS"]),
        (demo.nib(9), "3201", 1, ["ARREARS"]),
        (demo.nib(1), "7314", 1, ["ARREARS"]),
        (demo.nib(2), "7314", 2, ["ARREARS"]),
        (demo.nib(7), "7314", 1, ["ARREARS"]),
    ]
    assert report["newly_cleared"] == []
    changes = {c["application_id"]: c for c in report["changes"]}
    assert changes[a1["application_id"]]["stored_outcome"] == "CLEARED"
    assert changes[a8["application_id"]]["current_reason_codes"] == ["PDS_WORKERS"]
    assert changes[a8["application_id"]]["candidate_reason_codes"] == ["ARREARS", "PDS_WORKERS"]

    since = now - timedelta(days=30)
    report = await simulate(capsys, settings, candidate, region="7314", since=since)
    assert report["scope"] == {"region": "7314", "since": since.isoformat()}
    assert report["applications"] == 7  # not 6 and 9 (now 3201), not 7 (too old)
    assert blocked(report) == [
        (demo.nib(1), "7314", 1, ["ARREARS"]),
        (demo.nib(2), "7314", 2, ["ARREARS"]),
    ]


async def test_region_candidate_and_complete_snapshot(db, db_dsn, tmp_path, capsys) -> None:
    now = datetime.now(UTC)
    await enrol(db, 1, now)
    await store(db, demo.application(1, now=now), "CLEARED")
    await store(db, demo.application(2, scale="KECIL", workers=5, now=now), "PENDING")
    await store(db, demo.application(3, workers=0, now=now), "CLEARED")  # micro, nobody employed
    await store(db, demo.application(4, region="3201", now=now), "PENDING")
    candidate = write(
        tmp_path,
        "7314.toml",
        'region = "7314"\nversion = "try"\nabsent_record = "NOT_REGISTERED"\n',
    )
    settings = Settings(database_url=db_dsn, policy_dir=None)

    # Without the region's complete snapshot, absence still proves nothing.
    report = await simulate(capsys, settings, candidate)
    assert report["scope"]["region"] == "7314"  # a region file speaks for its region only
    assert report["applications"] == 3
    assert report["policy_versions"] == [
        {"current": "national-2026.1", "candidate": "national-2026.1+7314:try", "applications": 3}
    ]
    assert report["changed"]["applications"] == 0

    await db.execute(
        "INSERT INTO region_snapshot (region_code, complete_as_of, source_file, rows_in_file)"
        " VALUES ('7314', now(), 'bpjstk-7314.csv', 1)"
    )
    report = await simulate(capsys, settings, candidate)
    assert transitions(report) == {("CLEARED", "CLEARED"): 2, ("PENDING", "BLOCKED"): 1}
    assert blocked(report) == [(demo.nib(2), "7314", 1, ["NOT_REGISTERED"])]

    with pytest.raises(CommandError, match="changes nothing in --region 3201"):
        await simulate(capsys, settings, candidate, region="3201")


async def test_national_candidate_keeps_region_overrides(db, db_dsn, tmp_path, capsys) -> None:
    now = datetime.now(UTC)
    await enrol(db, 1, now, arrears=1)
    await enrol(db, 2, now, arrears=1)
    await store(db, demo.application(1, region="7314", now=now), "CLEARED")
    await store(db, demo.application(2, region="3201", now=now), "CLEARED")
    candidate = write(tmp_path, "national.toml", STRICT)
    # policies/regions/7314.toml sets its own tolerance of 1, which a new national one keeps
    settings = Settings(database_url=db_dsn, policy_dir=REPO_POLICIES)
    report = await simulate(capsys, settings, candidate)
    assert report["policy_versions"] == [
        {"current": "national-2026.1", "candidate": "strict-1", "applications": 1},
        {
            "current": "national-2026.1+7314:2026.1",
            "candidate": "strict-1+7314:2026.1",
            "applications": 1,
        },
    ]
    assert blocked(report) == [(demo.nib(2), "3201", 1, ["ARREARS"])]


async def test_the_transaction_refuses_writes(db) -> None:
    async with read_only(db):
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await db.execute("DELETE FROM outbox")


# --- through the console, on what the real services stored: nothing changes ---------------------


def _cli(dsn: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PTSP_GATE_POLICY_DIR"}
    return console(*argv, env={**env, "DATABASE_URL": dsn})


async def _database_state(db: asyncpg.Connection) -> dict[str, Any]:
    """Every table's row count and content digest, and every sequence's position (a write that
    was undone would still have moved one)."""
    tables = await db.fetch(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1"
    )
    state: dict[str, Any] = {}
    for row in tables:
        name = row["table_name"]
        state[name] = tuple(
            await db.fetchrow(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, chr(10) ORDER BY t::text), ''))"
                f' FROM "{name}" t'
            )
        )
    for row in await db.fetch(
        "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = current_schema()"
    ):
        state["sequence " + row["sequencename"]] = row["last_value"]
    return state


async def _end_offsets(bootstrap: list[str], topics: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def test_simulate_changes_nothing_in_the_database_or_on_kafka(
    settings, producer, bootstrap, db_dsn, tmp_path
) -> None:
    db = await connect(db_dsn)
    try:
        now = datetime.now(UTC)
        scenarios = demo.scenarios(now)
        extra = demo.Scenario(
            "one month behind",
            "CLEARED",
            (),
            demo.application(50, now=now),
            demo.enrolment(50, arrears=1, now=now),
        )
        scenarios.append(extra)
        await decide_scenarios(settings, producer, bootstrap, db, scenarios)
        # Something to lose: an outbox row not yet published must still be there afterwards.
        await db.execute(
            "INSERT INTO outbox (topic, key, headers, value, kind)"
            " VALUES ($1, 'k', '', 'v', 'test')",
            settings.topic_decisions,
        )

        db_before = await _database_state(db)
        kafka_before = await _end_offsets(bootstrap, settings.all_topics())
        assert sum(
            v for tp, v in kafka_before.items() if tp.topic == settings.topic_decisions
        ) == len(scenarios)

        candidate = write(tmp_path, "strict.toml", STRICT)
        runs = {
            fmt: await asyncio.to_thread(
                _cli, db_dsn, "policy", "simulate", "--policy", str(candidate), "--format", fmt
            )
            for fmt in ("json", "table", "csv")
        }
        for fmt, out in runs.items():
            assert (out.returncode, out.stderr) == (0, ""), fmt

        report = json.loads(runs["json"].stdout)
        decided = len(scenarios) - 1  # the REJECTED one was never stored as an application
        assert report["applications"] == decided
        assert transitions(report)[("CLEARED", "BLOCKED")] == 1
        assert blocked(report) == [(demo.nib(50), "7314", 1, ["ARREARS"])]
        assert report["drift"]["applications"] == 0  # just decided, on the same data
        assert f"over {decided} stored application(s) (all regions)" in runs["table"].stdout
        assert "Newly blocked employers: 1" in runs["table"].stdout
        rows = list(csv.DictReader(io.StringIO(runs["csv"].stdout)))
        assert [(r["nib"], r["current_outcome"], r["candidate_outcome"]) for r in rows] == [
            (demo.nib(50), "CLEARED", "BLOCKED")
        ]

        assert await _database_state(db) == db_before
        assert await _end_offsets(bootstrap, settings.all_topics()) == kafka_before
    finally:
        await db.close()


async def test_console_errors_are_one_line(server_dsn, db_dsn, tmp_path) -> None:
    candidate = write(tmp_path, "strict.toml", STRICT)
    out = await asyncio.to_thread(
        _cli, db_dsn, "policy", "simulate", "--policy", str(tmp_path / "missing.toml")
    )
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr.splitlines() == [
        f"ptsp-gate policy: {tmp_path / 'missing.toml'}: file not found"
    ]

    out = await asyncio.to_thread(
        _cli, db_dsn, "policy", "simulate", "--policy", str(candidate), "--since", "soon"
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("ptsp-gate policy simulate: argument")

    bare = await harness.create_database(server_dsn, "ptsp_gate_bare")
    out = await asyncio.to_thread(_cli, bare, "policy", "simulate", "--policy", str(candidate))
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        "ptsp-gate policy: database schema is behind: run `ptsp-gate migrate`"
    ]


async def test_csv_writes_formulas_as_text(db, db_dsn, tmp_path) -> None:
    # The contract lets an application id be any printable ASCII without spaces.
    now = datetime.now(UTC)
    hostile = ['=HYPERLINK("http://x")', "+1+1", "@SUM(A1)", "-2+3"]
    for n, application_id in enumerate([*hostile, "APP-7314-000005"], start=1):
        await enrol(db, n, now, arrears=1)
        app = {**demo.application(n, now=now), "application_id": application_id}
        await store(db, app, "CLEARED")
    candidate = write(tmp_path, "strict.toml", STRICT)
    out = await asyncio.to_thread(
        _cli, db_dsn, "policy", "simulate", "--policy", str(candidate), "--format", "csv"
    )
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert sorted(r["application_id"] for r in rows) == sorted(
        ["'" + h for h in hostile] + ["APP-7314-000005"]
    )
    assert {(r["current_outcome"], r["candidate_outcome"]) for r in rows} == {
        ("CLEARED", "BLOCKED")
    }
    assert {r["region_code"] for r in rows} == {"7314"}
