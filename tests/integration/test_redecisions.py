"""Blocked and pending applications clear (or block) by themselves when the employer's data
changes: exactly one superseding decision per real change, none for replays or no-op updates."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ptsp_gate import demo
from ptsp_gate.contract.events import EnrolmentState
from ptsp_gate.policy import load_policy_book
from ptsp_gate.runtime.context import HandlerContext
from ptsp_gate.stores import enrolments
from ptsp_gate.stores.unit_of_work import postgres_transactions
from ptsp_gate_permit_checker.sweep import sweep_once

from .conftest import eventually
from .support import decisions, read_topic, send, services

pytestmark = pytest.mark.integration


async def _decisions_for(db, application_id: str) -> list[dict]:
    rows = await db.fetch(
        "SELECT decision_id, outcome, reason_codes, supersedes FROM compliance_decision"
        " WHERE application_id = $1 ORDER BY seq",
        application_id,
    )
    return [dict(r) for r in rows]


async def _count(db, application_id: str, n: int) -> bool:
    return len(await _decisions_for(db, application_id)) >= n


async def _publish_enrolments(producer, settings, *states: dict) -> None:
    await send(producer, settings.topic_enrolment, [demo.enrolment_record(s) for s in states])


async def _submit(producer, settings, *applications: dict) -> None:
    records = [demo.application_record(a) for a in applications]
    await send(producer, settings.topic_applications, records)


async def test_blocked_employer_who_pays_gets_one_superseding_clearance(
    settings, producer, bootstrap, db
) -> None:
    now = datetime.now(UTC)
    app = demo.application(1, now=now)
    app_id = app["application_id"]
    owing = demo.enrolment(1, arrears=4, version=1, now=now)
    paid = demo.enrolment(1, arrears=0, version=2, now=now)
    async with services(settings) as running:
        await _publish_enrolments(producer, settings, owing)
        await eventually(lambda: db.fetchval("SELECT count(*) = 1 FROM employer_enrolment"))
        await _submit(producer, settings, app)
        await eventually(lambda: _count(db, app_id, 1))
        paid_record = demo.enrolment_record(paid, event_id=str(uuid.uuid4()))
        await send(producer, settings.topic_enrolment, [paid_record])
        await eventually(lambda: _count(db, app_id, 2))
        # The same update again, a replay of the old one, and an unchanged newer version.
        await send(
            producer,
            settings.topic_enrolment,
            [
                paid_record,
                demo.enrolment_record(owing),
                demo.enrolment_record({**paid, "version": 3}),
            ],
        )
        sync_metrics = running["enrolment-sync"].metrics

        async def all_seen() -> bool:
            m = sync_metrics.enrolment_updates
            return m.labels("applied")._value.get() + m.labels("stale")._value.get() == 5

        await eventually(all_seen)
        records = await read_topic(bootstrap, settings.topic_decisions, 2, settle=1.5)
    history = await _decisions_for(db, app_id)
    assert [(d["outcome"], list(d["reason_codes"])) for d in history] == [
        ("BLOCKED", ["ARREARS"]),
        ("CLEARED", []),
    ]
    assert history[1]["supersedes"] == history[0]["decision_id"]
    published = decisions(records)
    assert [d["outcome"] for d in published] == ["BLOCKED", "CLEARED"]
    assert published[1]["supersedes"] == str(history[0]["decision_id"])
    assert sync_metrics.redecisions.labels("BLOCKED", "CLEARED")._value.get() == 1
    assert await db.fetchval("SELECT count(*) FROM flagged_employer") == 0


async def test_pending_unknown_clears_when_the_record_arrives(settings, producer, db) -> None:
    now = datetime.now(UTC)
    app = demo.application(2, scale="KECIL", workers=4, now=now)
    async with services(settings):
        await _submit(producer, settings, app)
        await eventually(lambda: _count(db, app["application_id"], 1))
        await _publish_enrolments(
            producer,
            settings,
            demo.enrolment(2, programs=("JKK", "JKM", "JHT"), enrolled=4, now=now),
        )
        await eventually(lambda: _count(db, app["application_id"], 2))
    history = await _decisions_for(db, app["application_id"])
    assert [(d["outcome"], list(d["reason_codes"])) for d in history] == [
        ("PENDING", ["ENROLMENT_UNKNOWN"]),
        ("CLEARED", []),
    ]


async def test_stale_data_refreshed_resolves_and_cleared_stays_untouched(
    settings, producer, db
) -> None:
    now = datetime.now(UTC)
    stale_app = demo.application(3, now=now)
    cleared_app = demo.application(4, now=now)
    async with services(settings):
        await _publish_enrolments(
            producer, settings, demo.enrolment(3, age_days=200, now=now), demo.enrolment(4, now=now)
        )
        await eventually(lambda: db.fetchval("SELECT count(*) = 2 FROM employer_enrolment"))
        await _submit(producer, settings, stale_app, cleared_app)
        await eventually(lambda: _count(db, cleared_app["application_id"], 1))
        await eventually(lambda: _count(db, stale_app["application_id"], 1))
        await _publish_enrolments(
            producer,
            settings,
            demo.enrolment(3, version=2, now=now),
            demo.enrolment(4, arrears=6, version=2, now=now),
        )
        await eventually(lambda: _count(db, stale_app["application_id"], 2))
        await eventually(
            lambda: db.fetchval("SELECT count(*) = 2 FROM employer_enrolment WHERE version = 2")
        )
    assert [d["outcome"] for d in await _decisions_for(db, stale_app["application_id"])] == [
        "PENDING",
        "CLEARED",
    ]
    # Only open (PENDING/BLOCKED) applications are re-decided: a cleared permit is not revoked.
    assert [d["outcome"] for d in await _decisions_for(db, cleared_app["application_id"])] == [
        "CLEARED"
    ]


async def test_applications_older_than_the_window_are_left_alone(settings, producer, db) -> None:
    now = datetime.now(UTC)
    old = demo.application(5, now=now - timedelta(days=settings.redecide_window_days + 1))
    async with services(settings):
        await _publish_enrolments(producer, settings, demo.enrolment(5, arrears=5, now=now))
        await eventually(lambda: db.fetchval("SELECT count(*) = 1 FROM employer_enrolment"))
        await _submit(producer, settings, old)
        await eventually(lambda: _count(db, old["application_id"], 1))
        await _publish_enrolments(producer, settings, demo.enrolment(5, version=2, now=now))
        await eventually(lambda: db.fetchval("SELECT version = 2 FROM employer_enrolment"))
    assert [d["outcome"] for d in await _decisions_for(db, old["application_id"])] == ["BLOCKED"]


async def test_sweep_resolves_pending_from_data_loaded_behind_the_stream(
    settings, producer, db, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    known = demo.application(6, now=now)
    unknown = demo.application(7, scale="KECIL", workers=2, now=now)
    async with services(settings, "permit-checker") as running:
        await _submit(producer, settings, known, unknown)
        await eventually(lambda: _count(db, unknown["application_id"], 1))
        await eventually(lambda: _count(db, known["application_id"], 1))
        pool = running["permit-checker"].pool
        assert pool is not None
        # Data written without a re-decision (as a crash between two steps could leave it).
        async with pool.acquire() as conn:
            await enrolments.apply_newer(
                conn,
                [EnrolmentState.model_validate_json(json.dumps(demo.enrolment(6, now=now)))],
                "import",
                [None],
            )
        regional = tmp_path / "policies"
        (regional / "regions").mkdir(parents=True)
        (regional / "regions" / "7314.toml").write_text(
            'region = "7314"\nversion = "t1"\nabsent_record = "NOT_REGISTERED"\n'
        )
        await db.execute(
            "INSERT INTO region_snapshot (region_code, complete_as_of, source_file, rows_in_file)"
            " VALUES ('7314', now(), 'snapshot.csv', 1)"
        )
        ctx = HandlerContext.from_settings(
            settings,
            transactions=postgres_transactions(pool),
            metrics=running["permit-checker"].metrics,
            policies=load_policy_book(regional),
        )
        changes = await sweep_once(ctx)
        again = await sweep_once(ctx)
    assert changes is not None
    assert {(c.application_id, c.to_outcome) for c in changes} == {
        (known["application_id"], "CLEARED"),
        (unknown["application_id"], "BLOCKED"),
    }
    assert again == []
    latest = await _decisions_for(db, unknown["application_id"])
    assert list(latest[-1]["reason_codes"]) == ["NOT_REGISTERED"]
    assert ctx.metrics.sweep_runs.labels("ok")._value.get() == 2
    assert ctx.metrics.redecisions.labels("PENDING", "BLOCKED")._value.get() == 1
