"""A record PostgreSQL refuses on its own is dead-lettered; it never holds its partition back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ptsp_gate import demo

from .conftest import eventually
from .support import header, read_topic, send, services

pytestmark = pytest.mark.integration


async def _refuse(db, table: str, nib: str) -> None:
    """A trigger that refuses one employer's rows, as a constraint or a full disk would."""
    await db.execute(
        f"""
        CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.nib = '{nib}' THEN
                RAISE EXCEPTION 'refused for the test' USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON {table}
            FOR EACH ROW EXECUTE FUNCTION refuse_one();
        """
    )


async def test_permit_checker_isolates_a_refused_application(settings, producer, bootstrap, db):
    await _refuse(db, "permit_application", demo.nib(2))
    now = datetime.now(UTC)
    apps = [demo.application(n, workers=0, now=now) for n in range(1, 6)]
    async with services(settings, "permit-checker"):
        await send(
            producer, settings.topic_applications, [demo.application_record(a) for a in apps]
        )
        dead = await read_topic(bootstrap, settings.dlq_topic(settings.topic_applications), 1)

        async def four_decided() -> bool:
            return await db.fetchval("SELECT count(*) FROM compliance_decision") == 4

        await eventually(four_decided, timeout=30)
    assert [header(r, "ptsp-gate-error-code") for r in dead] == ["PROCESSING_FAILED"]
    assert "refused for the test" in (header(dead[0], "ptsp-gate-error-message") or "")
    decided = {r["nib"] for r in await db.fetch("SELECT nib FROM compliance_decision")}
    assert decided == {demo.nib(n) for n in (1, 3, 4, 5)}


async def test_enrolment_sync_isolates_a_refused_employer(settings, producer, bootstrap, db):
    await _refuse(db, "employer_enrolment", demo.nib(2))
    now = datetime.now(UTC)
    records = [demo.enrolment_record(demo.enrolment(n, now=now)) for n in range(1, 5)]
    async with services(settings, "enrolment-sync") as running:
        await send(producer, settings.topic_enrolment, records)
        dead = await read_topic(bootstrap, settings.dlq_topic(settings.topic_enrolment), 1)

        async def three_applied() -> bool:
            return await db.fetchval("SELECT count(*) FROM employer_enrolment") == 3

        await eventually(three_applied, timeout=30)
        updates = running["enrolment-sync"].metrics.enrolment_updates
        assert updates.labels("invalid")._value.get() == 1
        assert updates.labels("applied")._value.get() == 3
    assert [header(r, "ptsp-gate-error-code") for r in dead] == ["PROCESSING_FAILED"]
    stored = {r["nib"] for r in await db.fetch("SELECT nib FROM employer_enrolment")}
    assert stored == {demo.nib(n) for n in (1, 3, 4)}
