"""The in-memory store that the services' unit tests run on behaves as the PostgreSQL store:
the same records through the same handlers leave the same decisions, answers, dead letters and
dedupe records in both."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from ptsp_gate import decisions, demo, policy
from ptsp_gate.adapters.postgres import create_pool
from ptsp_gate.contract import dead_letter
from ptsp_gate.contract.cloudevents import unpack_headers
from ptsp_gate.policy.overrides import Grant, Scope
from ptsp_gate.runtime.context import HandlerContext
from ptsp_gate.runtime.in_memory import InMemory, Record
from ptsp_gate.stores import compliance
from ptsp_gate.stores.decisions import LARGE_BATCH, store_decisions
from ptsp_gate.stores.memory import MemoryOverride
from ptsp_gate.stores.unit_of_work import DecisionToStore, PostgresStore, postgres_transactions
from ptsp_gate_enrolment_sync.sync import EnrolmentSync
from ptsp_gate_permit_checker.checker import PermitChecker
from ptsp_gate_permit_checker.sweep import settle_overrides_once, sweep_once

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
WORLD = InMemory(now=NOW)  # its settings name the topics both runs use


def _script() -> list[tuple[str, list[Record]]]:
    """Batches in order: which handler, which records. Made once, so that both stores see the
    very same event ids."""
    scenarios = demo.scenarios(NOW)
    enrolments = WORLD.enrolments()
    applications = WORLD.applications()
    states = [
        enrolments.record(*demo.enrolment_record(s.enrolment)) for s in scenarios if s.enrolment
    ]
    apps: list[Record] = []
    for s in scenarios:
        key, headers, value = demo.application_record(s.application, s.ce_type)
        apps.append(applications.record(key, headers, s.raw_override or value))
    reused = str(uuid.uuid4())
    conflict = [
        applications.record(*demo.application_record(demo.application(n, now=NOW), event_id=reused))
        for n in (900, 901)
    ]
    # The employer of a pending scenario arrives later, and a stale copy of one after that.
    late = [
        enrolments.record(*demo.enrolment_record(demo.enrolment(900, now=NOW, version=2))),
        enrolments.record(*demo.enrolment_record(demo.enrolment(900, now=NOW, version=1))),
    ]
    return [
        ("sync", states),
        ("check", apps[: len(apps) // 2]),
        ("check", apps),  # half of it a redelivery
        ("check", conflict),
        ("sync", late),
        ("sweep", []),
    ]


SCRIPT = _script()


async def _run(ctx: HandlerContext) -> None:
    for step, records in SCRIPT:
        if step == "sync":
            await EnrolmentSync(ctx).handle_batch(records)
        elif step == "check":
            await PermitChecker(ctx).handle_batch(records)
        else:
            await sweep_once(ctx)


def _decision_facts(decisions: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {
        (
            d["application_id"],
            d["outcome"],
            tuple(r["code"] for r in d["reasons"]),
            str(d["decision_id"]),
            str(d["supersedes"]) if d["supersedes"] else None,
        )
        for d in decisions
    }


def on_postgres(pool: asyncpg.Pool) -> HandlerContext:
    """The context `InMemory` makes, over PostgreSQL: same settings, policies and clock."""
    ctx = HandlerContext.from_settings(
        WORLD.settings,
        transactions=postgres_transactions(pool),
        metrics=InMemory().metrics,
        policies=WORLD.policies,
    )
    return dataclasses.replace(ctx, clock=lambda: NOW)


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db_dsn, 2)
    try:
        yield pool
    finally:
        await pool.close()


async def test_memory_and_postgres_stores_agree(pool: asyncpg.Pool) -> None:
    memory = InMemory(now=NOW)
    await _run(memory.context())

    await _run(on_postgres(pool))

    # Everything queued for publication, in the order it would be published: decisions, their
    # CloudEvents headers, re-decisions in application order, dead letters and their headers.
    rows = await pool.fetch("SELECT topic, key, headers, value, kind FROM outbox ORDER BY id")
    on_pg = [
        (r["kind"], r["topic"], r["key"], unpack_headers(r["headers"]), r["value"]) for r in rows
    ]
    in_memory = [(r.kind, r.topic, r.key, list(r.headers), r.value) for r in memory.state.outbox]
    assert in_memory == on_pg
    decided = [json.loads(value or b"") for kind, _, _, _, value in on_pg if kind == "decision"]
    assert len(_decision_facts(decided)) == len(decided)
    assert any(d["supersedes"] for d in decided)
    dead = [
        dict(headers)[dead_letter.ERROR_CODE] for kind, _, _, headers, _ in on_pg if kind == "dlq"
    ]
    assert b"ID_CONFLICT" in dead

    pg_versions = dict(await pool.fetch("SELECT nib, version FROM employer_enrolment"))
    assert {n: s.version for n, s in memory.state.enrolments.items()} == pg_versions
    pg_keys = {
        (r["topic"], r["event_key"]) for r in await pool.fetch("SELECT * FROM processed_event")
    }
    assert set(memory.state.processed) == pg_keys


async def test_a_closed_application_is_never_read_back(pool: asyncpg.Pool) -> None:
    # Only open (PENDING, BLOCKED) applications are re-decided, so only theirs are parsed: a
    # stored CLEARED application whose payload no longer validates must not stop its employer's
    # new enrolment state from applying.
    ctx = on_postgres(pool)
    enrolments, applications = WORLD.enrolments(), WORLD.applications()
    await EnrolmentSync(ctx).handle_batch(
        [enrolments.record(*demo.enrolment_record(demo.enrolment(1, now=NOW)))]
    )
    await PermitChecker(ctx).handle_batch(
        [applications.record(*demo.application_record(demo.application(1, now=NOW)))]
    )
    assert await pool.fetchval("SELECT outcome FROM compliance_decision") == "CLEARED"
    await pool.execute("""UPDATE permit_application SET payload = '{"unreadable": true}'""")
    await EnrolmentSync(ctx).handle_batch(
        [enrolments.record(*demo.enrolment_record(demo.enrolment(1, now=NOW, version=2)))]
    )
    assert await pool.fetchval("SELECT version FROM employer_enrolment") == 2
    assert await pool.fetchval("SELECT count(*) FROM compliance_decision") == 1
    # The stored payload was altered under the projection, which had copied the employer's name
    # from it: rebuilt, so that the check every test ends with compares like with like.
    async with pool.acquire() as conn:
        await compliance.rebuild(conn)


async def test_a_large_batch_is_planned_for_its_size(pool: asyncpg.Pool) -> None:
    # A cached generic plan cannot see an array's length and may join a national batch by
    # nested loops; a consumer batch keeps the cached plan, which costs less to run.
    def rejected(n: int) -> DecisionToStore:
        # An answer to an invalid event, as the permit checker builds it: nothing to project.
        verdict = policy.rejected("national-2026.1", [], "-")
        decision = decisions.build(
            f"ev-plan-{n}",
            verdict,
            application_id=f"OSS-PLAN-{n}",
            nib=None,
            action=None,
            region_code=None,
            enrolment_version=None,
            now=NOW,
        )
        return (decision, f"ev-plan-{n}", None)

    for size, mode in ((LARGE_BATCH, "auto"), (LARGE_BATCH + 1, "force_custom_plan")):
        async with pool.acquire() as conn, conn.transaction():
            stored = await store_decisions(conn, [rejected(n) for n in range(size)], "d", "s")
            assert len(stored) == size
            assert await conn.fetchval("SHOW plan_cache_mode") == mode
            await conn.execute("DELETE FROM outbox; DELETE FROM compliance_decision")


async def test_both_stores_apply_and_end_overrides_alike(pool: asyncpg.Pool) -> None:
    # An employer override and an application override, granted, applied, and ended (the first
    # by expiry, the second by revocation); a new application under the first meanwhile.
    enrolments, applications = WORLD.enrolments(), WORLD.applications()
    owing = [
        enrolments.record(*demo.enrolment_record(demo.enrolment(n, arrears=5, now=NOW)))
        for n in (41, 42)
    ]
    apps = [
        applications.record(*demo.application_record(demo.application(n, now=NOW)))
        for n in (41, 42)
    ]
    later = applications.record(
        *demo.application_record(
            {**demo.application(41, now=NOW), "application_id": "APP-7314-LATER"}
        )
    )
    granted_at = NOW - timedelta(hours=1)
    grants = [
        Grant(
            override_id=uuid.UUID(int=41),
            scope=Scope.EMPLOYER,
            application_id=None,
            nib=demo.nib(41),
            region_code="7314",
            legal_basis="Perbup 12/2026",
            document_ref="SK-41",
            asked_by="ana",
            granted_by="budi",
            granted_at=granted_at,
            expires_at=NOW + timedelta(days=1),
        ),
        Grant(
            override_id=uuid.UUID(int=42),
            scope=Scope.APPLICATION,
            application_id=demo.application(42, now=NOW)["application_id"],
            nib=demo.nib(42),
            region_code="7314",
            legal_basis="Perbup 12/2026",
            document_ref="SK-42",
            asked_by="ana",
            granted_by="budi",
            granted_at=granted_at,
            expires_at=NOW + timedelta(days=30),
        ),
    ]
    clock = {"now": NOW}

    async def script(ctx: HandlerContext, grant: Any, revoke: Any) -> None:
        ctx = dataclasses.replace(ctx, clock=lambda: clock["now"])
        clock["now"] = NOW
        await EnrolmentSync(ctx).handle_batch(owing)
        await PermitChecker(ctx).handle_batch(apps)
        await grant()
        assert await settle_overrides_once(ctx)
        await PermitChecker(ctx).handle_batch([later])
        await revoke()
        clock["now"] = NOW + timedelta(days=2)  # past the first one's expiry
        assert await settle_overrides_once(ctx)
        assert await settle_overrides_once(ctx) == []

    memory = InMemory(now=NOW)

    async def grant_in_memory() -> None:
        memory.state.overrides.extend(MemoryOverride(g) for g in grants)

    async def revoke_in_memory() -> None:
        memory.state.overrides[1].revoked = True

    await script(memory.context(), grant_in_memory, revoke_in_memory)

    async def grant_in_postgres() -> None:
        ana = await pool.fetchval(
            "INSERT INTO officer (username, role) VALUES ('ana', 'officer') RETURNING officer_id"
        )
        budi = await pool.fetchval(
            "INSERT INTO officer (username, role) VALUES ('budi', 'supervisor')"
            " RETURNING officer_id"
        )
        for g in grants:
            await pool.execute(
                """
                INSERT INTO officer_override (override_id, scope, application_id, nib,
                    region_code, legal_basis, document_ref, reason, expires_at, asked_by,
                    asked_at, state, decided_by, decided_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, 'r', $8, $9, $10, 'GRANTED', $11, $10)
                """,
                g.override_id,
                g.scope.value,
                g.application_id,
                g.nib,
                g.region_code,
                g.legal_basis,
                g.document_ref,
                g.expires_at,
                ana,
                g.granted_at,
                budi,
            )

    async def revoke_in_postgres() -> None:
        await pool.execute(
            "UPDATE officer_override SET state = 'REVOKED', revoked_at = now(),"
            " revoked_by = decided_by WHERE override_id = $1",
            grants[1].override_id,
        )

    await script(on_postgres(pool), grant_in_postgres, revoke_in_postgres)

    rows = await pool.fetch("SELECT topic, key, headers, value, kind FROM outbox ORDER BY id")
    on_pg = [
        (r["kind"], r["topic"], r["key"], unpack_headers(r["headers"]), r["value"]) for r in rows
    ]
    in_memory = [(r.kind, r.topic, r.key, list(r.headers), r.value) for r in memory.state.outbox]
    assert in_memory == on_pg
    outcomes = [
        (d["application_id"], d["outcome"], [r["code"] for r in d["reasons"]])
        for d in (json.loads(value or b"") for kind, _, _, _, value in on_pg if kind == "decision")
    ]
    first, second = (demo.application(n, now=NOW)["application_id"] for n in (41, 42))
    # Per step: first decisions; the grants applied; the new application under one; the ends.
    steps = [2, 2, 1, 3]
    assert [sorted(outcomes[sum(steps[:i]) : sum(steps[: i + 1])]) for i in range(4)] == [
        [(first, "BLOCKED", ["ARREARS"]), (second, "BLOCKED", ["ARREARS"])],
        [(first, "CLEARED", ["OFFICER_OVERRIDE"]), (second, "CLEARED", ["OFFICER_OVERRIDE"])],
        [("APP-7314-LATER", "CLEARED", ["OFFICER_OVERRIDE"])],
        [
            (first, "BLOCKED", ["ARREARS"]),
            (second, "BLOCKED", ["ARREARS"]),
            ("APP-7314-LATER", "BLOCKED", ["ARREARS"]),
        ],
    ]
    assert len(outcomes) == sum(steps)
    states = dict(await pool.fetch("SELECT override_id, state FROM officer_override"))
    assert states == {grants[0].override_id: "EXPIRED", grants[1].override_id: "REVOKED"}


async def test_a_decision_committed_after_its_grant_was_applied_is_caught_again(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A permit-checker batch that read the grants before a grant committed, and stored its
    # decision after the grant was applied: the next settling, within the grace period, decides
    # that application again under the grant.
    ctx = on_postgres(pool)
    enrolments, applications = WORLD.enrolments(), WORLD.applications()
    await EnrolmentSync(ctx).handle_batch(
        [enrolments.record(*demo.enrolment_record(demo.enrolment(51, arrears=5, now=NOW)))]
    )
    ana = await pool.fetchval(
        "INSERT INTO officer (username, role) VALUES ('ana', 'officer') RETURNING officer_id"
    )
    budi = await pool.fetchval(
        "INSERT INTO officer (username, role) VALUES ('budi', 'supervisor') RETURNING officer_id"
    )
    oid = await pool.fetchval(
        """
        INSERT INTO officer_override (scope, nib, region_code, legal_basis, document_ref, reason,
            expires_at, asked_by, asked_at, state, decided_by, decided_at)
        VALUES ('EMPLOYER', $1, '7314', 'Perbup 12/2026', 'SK-51', 'r', $2, $3, $4, 'GRANTED',
            $5, $4)
        RETURNING override_id
        """,
        demo.nib(51),
        NOW + timedelta(days=10),
        ana,
        NOW - timedelta(minutes=1),
        budi,
    )
    assert await settle_overrides_once(ctx) == []  # nothing open yet: applied to nothing
    assert await pool.fetchval("SELECT applied_at FROM officer_override") is not None

    async def before_the_grant(self: Any, *args: Any) -> list[Any]:
        return []

    with monkeypatch.context() as patched:
        patched.setattr(PostgresStore, "grants", before_the_grant)
        await PermitChecker(ctx).handle_batch(
            [applications.record(*demo.application_record(demo.application(51, now=NOW)))]
        )
    assert await pool.fetchval("SELECT outcome FROM compliance_decision") == "BLOCKED"
    (change,) = await settle_overrides_once(ctx)
    assert change.decision.outcome.value == "CLEARED"
    assert change.decision.reasons[0].details["override_id"] == str(oid)
    # Past the grace period, settling no longer looks at it.
    later = dataclasses.replace(ctx, clock=lambda: NOW + timedelta(hours=1))
    assert await settle_overrides_once(later) == []
