"""The compliance projection on PostgreSQL: kept equal to its recomputation from the history
whatever order, concurrency and replays the writers bring; built by the migration from an older
history; checked and rebuilt by `ptsp-gate projection`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptsp_gate.adapters import migrations
from ptsp_gate.adapters.postgres import connect
from ptsp_gate.contract.events import Action, ComplianceDecision, Outcome, Reason, ReasonCode
from ptsp_gate.embedded import harness
from ptsp_gate.stores import compliance
from ptsp_gate.stores.decisions import store_decisions
from tests.cli_helpers import console

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, tzinfo=UTC)
NIBS = ("9120000000101", "9120000000102", "9120000000103")
APPS = tuple(f"OSS-P-{n}" for n in range(5))
_CODES = {
    "BLOCKED": [ReasonCode.ARREARS],
    "PENDING": [ReasonCode.ENROLMENT_UNKNOWN],
    "CLEARED": [],
    "REJECTED": [ReasonCode.INVALID_EVENT],
}


def _event_id(app: str, nib: str) -> str:
    return f"ev-{app}-{nib}"


async def _applications(conn: asyncpg.Connection) -> None:
    """One application event per (application, employer): a corrected resend may move an
    application to another NIB."""
    for i, app in enumerate(APPS):
        for j, nib in enumerate(NIBS):
            payload = {"employer": {"name": f"CV Usaha {j} Bersama", "nib": nib}}
            await conn.execute(
                """
                INSERT INTO permit_application (event_id, application_id, action, nib, npwp,
                    region_code, scale, workers_declared, submitted_at, payload)
                VALUES ($1, $2, 'NEW', $3, '012345678901234', $4, 'MIKRO', 0, $5, $6::jsonb)
                """,
                _event_id(app, nib),
                app,
                nib,
                "7314" if j else "7315",
                T0 + timedelta(days=i, hours=j),
                payload,
            )


def _decision(
    app: str, nib: str, outcome: str, at: datetime, supersedes: uuid.UUID | None
) -> ComplianceDecision:
    return ComplianceDecision(
        decision_id=uuid.uuid4(),
        application_id=app,
        nib=nib,
        action=Action.NEW,
        region_code="7314" if nib != NIBS[0] else "7315",
        outcome=Outcome(outcome),
        reasons=[Reason(code=c, message=c.value) for c in _CODES[outcome]],
        enrolment_as_of=None,
        policy_version="national-2026.1",
        decided_at=at,
        supersedes=supersedes,
    )


@dataclass(frozen=True)
class Op:
    app: int
    nib: int
    outcome: str
    kind: str  # "first" (no supersedes), "again" (a re-decision), "replay" (an earlier decision)


ops = st.builds(
    Op,
    app=st.integers(0, len(APPS) - 1),
    nib=st.integers(0, len(NIBS) - 1),
    outcome=st.sampled_from(("BLOCKED", "CLEARED", "PENDING", "REJECTED")),
    kind=st.sampled_from(("first", "again", "again", "replay")),
)
# Per writer, its transactions; per transaction, its decisions.
writers = st.lists(
    st.lists(st.lists(ops, min_size=1, max_size=4), max_size=5), min_size=1, max_size=3
)


async def _run_writers(dsn: str, plan: list[list[list[Op]]]) -> None:
    # The first three applications have a decision before the writers start; the others get
    # their first ones from the writers, possibly from two of them at once under two NIBs (a
    # corrected resend arriving on another partition).
    seed = {app: _decision(app, NIBS[0], "PENDING", T0, None) for app in APPS[:3]}
    conn = await connect(dsn)
    try:
        async with conn.transaction():
            await store_decisions(
                conn,
                [(d, _event_id(d.application_id, NIBS[0]), None) for d in seed.values()],
                "t",
                "s",
            )
    finally:
        await conn.close()
    made: list[tuple[ComplianceDecision, str]] = []
    clock = iter(range(1, 10_000))

    async def writer(transactions: list[list[Op]]) -> None:
        conn = await connect(dsn)
        try:
            for ops_ in transactions:
                batch = []
                for op in ops_:
                    app, nib = APPS[op.app], NIBS[op.nib]
                    if op.kind == "replay" and made:
                        batch.append(made[(op.app * 7 + op.nib) % len(made)])
                        continue
                    at = T0 + timedelta(hours=next(clock))
                    d = _decision(
                        app,
                        nib,
                        op.outcome,
                        at,
                        seed[app].decision_id if op.kind == "again" and app in seed else None,
                    )
                    made.append((d, _event_id(app, nib)))
                    batch.append(made[-1])
                for attempt in range(5):
                    try:
                        async with conn.transaction():
                            await store_decisions(conn, [(d, e, None) for d, e in batch], "t", "s")
                        break
                    except asyncpg.DeadlockDetectedError:  # retried, as the consumer loop does
                        if attempt == 4:
                            raise
                await asyncio.sleep(0)
        finally:
            await conn.close()

    await asyncio.gather(*(writer(w) for w in plan))


async def _differences(dsn: str) -> list[compliance.Difference]:
    conn = await connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return [d for d in await compliance.verify(conn) if d.missing or d.extra]
    finally:
        await conn.close()


async def _reset(dsn: str) -> None:
    conn = await connect(dsn)
    try:
        await conn.execute(
            "TRUNCATE compliance_decision, application_standing, compliance_episode,"
            " employer_compliance, outbox, permit_application"
        )
        await _applications(conn)
    finally:
        await conn.close()


@pytest.mark.machine_postgres_only
def test_projection_equals_its_recomputation_under_any_interleaving(db_dsn: str) -> None:
    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(plan=writers)
    def check(plan: list[list[list[Op]]]) -> None:
        async def scenario() -> list[compliance.Difference]:
            await _reset(db_dsn)
            await _run_writers(db_dsn, plan)
            return await _differences(db_dsn)

        assert asyncio.run(scenario()) == []

    check()


# --- scenarios computed by hand ------------------------------------------------------------------


async def _store(conn: asyncpg.Connection, *decisions: ComplianceDecision) -> None:
    async with conn.transaction():
        await store_decisions(
            conn, [(d, _event_id(d.application_id, d.nib or ""), None) for d in decisions], "t", "s"
        )


async def test_episodes_begin_and_end_as_decisions_say(db: asyncpg.Connection) -> None:
    await _applications(db)
    nib = NIBS[1]
    a, b = APPS[0], APPS[1]
    first = _decision(a, nib, "BLOCKED", T0 + timedelta(days=1), None)
    await _store(db, first)
    cleared = _decision(a, nib, "CLEARED", T0 + timedelta(days=20), first.decision_id)
    await _store(db, cleared)
    again = _decision(b, nib, "BLOCKED", T0 + timedelta(days=30), None)
    renewed = _decision(b, nib, "PENDING", T0 + timedelta(days=31), None)  # a new application
    await _store(db, again, renewed)
    await _store(db, _decision(b, nib, "BLOCKED", T0 + timedelta(days=40), again.decision_id))

    episodes = [
        dict(r)
        for r in await db.fetch(
            "SELECT began_at, ended_at, ended_outcome, ended_by FROM compliance_episode"
            " WHERE nib = $1 ORDER BY began_seq",
            nib,
        )
    ]
    assert episodes == [
        {
            "began_at": T0 + timedelta(days=1),
            "ended_at": T0 + timedelta(days=20),
            "ended_outcome": "CLEARED",
            "ended_by": "REDECISION",
        },
        {
            "began_at": T0 + timedelta(days=30),
            "ended_at": T0 + timedelta(days=31),
            "ended_outcome": "PENDING",
            "ended_by": "NEW_APPLICATION",
        },
        {
            "began_at": T0 + timedelta(days=40),
            "ended_at": None,
            "ended_outcome": None,
            "ended_by": None,
        },
    ]
    row = await db.fetchrow("SELECT * FROM employer_compliance WHERE nib = $1", nib)
    assert row["outcome"] == "BLOCKED"
    assert row["first_flagged_at"] == T0 + timedelta(days=1)
    assert row["flagged_since"] == T0 + timedelta(days=40)
    assert (row["open_applications"], row["blocked_applications"]) == (1, 1)
    assert row["employer_name"] == "CV Usaha 1 Bersama"
    # A REJECTED decision changes no standing; a replay changes nothing.
    await _store(db, _decision(a, nib, "REJECTED", T0 + timedelta(days=41), None))
    await _store(db, cleared)
    assert (
        await db.fetchval("SELECT outcome FROM employer_compliance WHERE nib = $1", nib)
        == "BLOCKED"
    )
    assert await db.fetchval("SELECT count(*) FROM compliance_episode") == 3


async def test_verify_names_a_difference_and_rebuild_repairs_it(db, db_dsn) -> None:
    await _applications(db)
    await _store(db, _decision(APPS[0], NIBS[2], "BLOCKED", T0, None))
    assert (await asyncio.to_thread(_cli, db_dsn, "projection", "verify")).returncode == 0
    await db.execute("UPDATE employer_compliance SET blocked_applications = 7")

    out = await asyncio.to_thread(_cli, db_dsn, "projection", "verify", "--format", "json")
    assert out.returncode == 3, out.stderr
    report = json.loads(out.stdout)
    assert report["equal"] is False
    wrong = {t["table"]: t for t in report["tables"]}["employer_compliance"]
    assert (wrong["missing"], wrong["extra"], wrong["sample"]) == (1, 1, [NIBS[2]])

    out = await asyncio.to_thread(_cli, db_dsn, "projection", "rebuild")
    assert out.returncode == 0, out.stderr
    out = await asyncio.to_thread(_cli, db_dsn, "projection", "verify")
    assert out.returncode == 0, out.stdout
    assert "equals its recomputation" in out.stdout


async def test_the_migration_builds_the_projection_from_an_older_history(server_dsn) -> None:
    dsn = await harness.create_database(server_dsn, "ptsp_gate_backfill")
    conn = await connect(dsn)
    try:
        older = [m for m in migrations.available() if m.version < 5]
        await conn.execute(
            "CREATE TABLE schema_migration (version integer PRIMARY KEY, name text NOT NULL,"
            " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for m in older:
            await conn.execute(m.sql)
            await conn.execute(
                "INSERT INTO schema_migration (version, name, checksum) VALUES ($1, $2, $3)",
                m.version,
                m.name,
                m.checksum,
            )
        await _applications(conn)
        # Decisions as a release without the projection stored them.
        first = _decision(APPS[0], NIBS[1], "BLOCKED", T0, None)
        history = [
            first,
            _decision(APPS[0], NIBS[1], "CLEARED", T0 + timedelta(days=9), first.decision_id),
            _decision(APPS[1], NIBS[2], "BLOCKED", T0 + timedelta(days=2), None),
            _decision(APPS[2], NIBS[2], "REJECTED", T0 + timedelta(days=3), None),
        ]
        for d in history:
            await conn.execute(
                """
                INSERT INTO compliance_decision (decision_id, event_id, application_id, nib,
                    action, region_code, outcome, reason_codes, reasons, policy_version,
                    decided_at, supersedes)
                VALUES ($1, $2, $3, $4, 'NEW', $5, $6, $7, '[]'::jsonb, 'national-2026.1', $8, $9)
                """,
                d.decision_id,
                _event_id(d.application_id, d.nib or ""),
                d.application_id,
                d.nib,
                d.region_code,
                d.outcome.value,
                [r.code.value for r in d.reasons],
                d.decided_at,
                d.supersedes,
            )
        applied = await migrations.migrate(conn)
        assert applied[0] == "0005_compliance_projection.sql"
        assert await _differences(dsn) == []
        flagged = await conn.fetch("SELECT nib, first_flagged_at FROM flagged_employer")
        assert [(r["nib"], r["first_flagged_at"]) for r in flagged] == [
            (NIBS[2], T0 + timedelta(days=2))
        ]
        ended = await conn.fetchrow(
            "SELECT ended_by, ended_at FROM compliance_episode WHERE nib = $1", NIBS[1]
        )
        assert dict(ended) == {"ended_by": "REDECISION", "ended_at": T0 + timedelta(days=9)}
    finally:
        await conn.close()
        await harness.drop_database(server_dsn, dsn)


def _cli(dsn: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return console(*argv, env={**os.environ, "DATABASE_URL": dsn})
