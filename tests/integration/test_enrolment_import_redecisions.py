"""What a bulk import changes beyond the projection: the re-decisions of open applications, and
the enrolment sync's metrics of the recorded imports."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ptsp_gate import demo

from .conftest import eventually
from .import_support import record, run_import, write
from .support import decisions, read_topic, send, services

pytestmark = pytest.mark.integration


async def test_an_import_that_enrols_a_blocked_employer_clears_it_once(
    settings, producer, bootstrap, db, tmp_path
) -> None:
    now = datetime.now(UTC)
    as_of = (now - timedelta(days=1)).isoformat()
    n = 4242
    async with services(settings, "permit-checker"):
        # Known to BPJS TK as not registered: the application is BLOCKED.
        first = write(
            tmp_path / "v1.csv",
            [record(n, 1, status="NOT_REGISTERED", programs="", as_of=as_of)],
        )
        await run_import(db, first, settings)
        application = demo.application(n, workers=3, now=now)
        await send(producer, settings.topic_applications, [demo.application_record(application)])

        async def decided() -> Any:
            return await db.fetchrow(
                "SELECT decision_id, outcome FROM compliance_decision WHERE application_id = $1",
                application["application_id"],
            )

        blocked = await eventually(decided)
        assert blocked["outcome"] == "BLOCKED"

        enrolled = write(tmp_path / "v2.csv", [record(n, 2, as_of=as_of)])
        result = await run_import(db, enrolled, settings)
        assert (result.rows_applied, result.redecisions) == (1, 1)
        # Replays and no-op changes produce nothing more.
        assert (await run_import(db, enrolled, settings)).redecisions == 0
        same = write(tmp_path / "v3.csv", [record(n, 3, as_of=as_of)])
        again = await run_import(db, same, settings)
        assert (again.rows_applied, again.redecisions) == (1, 0)

        records = await read_topic(bootstrap, settings.topic_decisions, 2)
    published = decisions(records)
    assert [d["outcome"] for d in published] == ["BLOCKED", "CLEARED"]
    assert published[1]["supersedes"] == str(blocked["decision_id"])
    rows = await db.fetch(
        "SELECT outcome, supersedes FROM compliance_decision WHERE application_id = $1 "
        "ORDER BY seq",
        application["application_id"],
    )
    assert [(r["outcome"], r["supersedes"]) for r in rows] == [
        ("BLOCKED", None),
        ("CLEARED", blocked["decision_id"]),
    ]
    assert await db.fetchval("SELECT sum(redecisions) FROM enrolment_import") == 1


async def test_import_rows_and_freshness_reach_the_enrolment_sync_metrics(settings, db) -> None:
    import asyncio
    import contextlib
    from datetime import UTC, datetime

    from ptsp_gate import demo
    from ptsp_gate.contract.events import (
        Action,
        ComplianceDecision,
        EnrolmentState,
        Outcome,
        Reason,
        ReasonCode,
    )
    from ptsp_gate.observability.metrics import Metrics
    from ptsp_gate.stores import enrolments
    from ptsp_gate.stores.decisions import store_decisions
    from ptsp_gate_enrolment_sync.projection_metrics import projection_metrics_refresher

    await db.execute(
        "INSERT INTO enrolment_import (source_file, region_code, complete, rows_read,"
        " rows_applied, rows_stale, rows_rejected, redecisions, started_at, finished_at)"
        " VALUES ('a.csv', NULL, false, 10, 7, 2, 1, 3, now(), now()),"
        "        ('b.csv', '7314', true, 5, 5, 0, 0, 1, now(), now())"
    )
    now = datetime.now(UTC)
    states = [
        EnrolmentState.model_validate_json(json.dumps(demo.enrolment(n, age_days=age, now=now)))
        for n, age in ((1, 2), (2, 30), (3, 200))
    ]
    await enrolments.apply_newer(db, states, "stream", [None] * len(states))
    # One employer flagged now, in 7314: the coverage gauges read it from the projection.
    blocked = ComplianceDecision(
        decision_id=uuid.uuid4(),
        application_id="OSS-G-1",
        nib=demo.nib(3),
        action=Action.NEW,
        region_code="7314",
        outcome=Outcome.BLOCKED,
        reasons=[Reason(code=ReasonCode.ENROLMENT_STALE, message="-")],
        enrolment_as_of=None,
        policy_version="national-2026.1",
        decided_at=now,
        supersedes=None,
    )
    async with db.transaction():
        await store_decisions(db, [(blocked, "ev-g-1", None)], "decisions", "test")
    from ptsp_gate.adapters.postgres import create_pool

    pool = await create_pool(settings.dsn(), 2)
    metrics = Metrics()
    task = asyncio.create_task(
        projection_metrics_refresher(pool, metrics, max_age_days=90, window_days=90, every_s=0.05)
    )
    try:
        for _ in range(100):
            flagged = metrics.flagged_employers.labels("7314")._value.get()
            if metrics.import_redecisions._value.get() == 4 and flagged == 1:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pool.close()
    assert metrics.import_rows.labels("applied")._value.get() == 12
    assert metrics.import_rows.labels("stale")._value.get() == 2
    assert metrics.import_rows.labels("rejected")._value.get() == 1
    assert metrics.import_redecisions._value.get() == 4
    assert metrics.enrolment_records.labels("fresh")._value.get() == 2
    assert metrics.enrolment_records.labels("stale")._value.get() == 1
    newest = metrics.enrolment_newest_as_of._value.get()
    assert abs(newest - states[0].as_of.timestamp()) < 1
    assert metrics.flagged_employers.labels("7314")._value.get() == 1
    assert metrics.coverage_flagged.labels("7314")._value.get() == 1
    assert metrics.coverage_cleared.labels("7314")._value.get() == 0
