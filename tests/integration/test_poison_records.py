"""A record PostgreSQL refuses on its own is dead-lettered; it never holds its partition back."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import pytest

from ptsp_gate import decisions as decision_builder
from ptsp_gate import demo

from .conftest import eventually
from .support import application_id, decisions, header, read_topic, send, services

# Delivery behaviour, proved on Apache Kafka in the first pass; the PostgreSQL it needs is the
# same on every version, so the second pass leaves it out.
pytestmark = [pytest.mark.integration, pytest.mark.apache_kafka_only]


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


def _poison_on_partition_of(key: bytes, headers, structured_headers) -> list:
    """Every poison kind, keyed like the valid events so that all share one partition."""
    deep = b"[" * 1000 + b"]" * 1000
    attrs = {k[3:]: v.decode() for k, v in headers if k.startswith("ce_")}
    envelope = json.dumps(attrs)[:-1]

    def structured(data: str) -> bytes:
        return (envelope + ', "data": ' + data + "}").encode()

    return [
        (key, headers, deep),
        (key, structured_headers, structured("[" * 5000 + "]" * 5000)),
        (key, structured_headers, structured("1" * 5000)),
        (key, headers, b'{"application_id": "A-1", "n": ' + b"9" * 5000 + b"}"),
    ]


async def test_poison_records_are_dead_lettered_and_the_events_behind_them_decided(
    settings, producer, bootstrap, db
):
    now = datetime.now(UTC)
    apps = [demo.application(n, workers=0, now=now) for n in range(1, 4)]
    key, headers, _ = demo.application_record(apps[0])
    structured_headers = [("content-type", b"application/cloudevents+json")]
    poison = _poison_on_partition_of(key, headers, structured_headers)
    behind = [demo.application_record(a) for a in apps]
    # The valid events go to the poison's partition, behind it.
    behind = [(key, h, v) for _, h, v in behind]
    async with services(settings, "permit-checker"):
        started = time.monotonic()
        await send(producer, settings.topic_applications, [*poison, *behind])

        async def behind_decided() -> bool:
            return await db.fetchval("SELECT count(*) FROM compliance_decision") == len(apps)

        await eventually(behind_decided, timeout=30)
        took = time.monotonic() - started
        dead = await read_topic(
            bootstrap, settings.dlq_topic(settings.topic_applications), len(poison)
        )
    assert sorted(header(r, "ptsp-gate-error-code") for r in dead) == ["SCHEMA_VIOLATION"] * 4
    assert took < 10, f"events behind the poison took {took:.1f} s"


async def test_a_deeply_nested_enrolment_record_is_dead_lettered(settings, producer, bootstrap, db):
    now = datetime.now(UTC)
    key, headers, _ = demo.enrolment_record(demo.enrolment(1, now=now))
    good = [demo.enrolment_record(demo.enrolment(n, now=now)) for n in (1, 2)]
    async with services(settings, "enrolment-sync"):
        await send(
            producer,
            settings.topic_enrolment,
            [(key, headers, b"[" * 1000 + b"]" * 1000), *[(key, h, v) for _, h, v in good]],
        )
        dead = await read_topic(bootstrap, settings.dlq_topic(settings.topic_enrolment), 1)

        async def applied() -> bool:
            return await db.fetchval("SELECT count(*) FROM employer_enrolment") == 2

        await eventually(applied, timeout=30)
    assert [header(r, "ptsp-gate-error-code") for r in dead] == ["SCHEMA_VIOLATION"]


async def test_a_record_that_fails_deciding_is_isolated_while_the_database_is_healthy(
    settings, producer, bootstrap, db, monkeypatch
):
    # A fault that follows one record and is not the database's: deciding it raises, as a bug
    # in a policy rule would. Retried once, then the batch is taken apart and only that record
    # is dead-lettered; the rest is decided.
    now = datetime.now(UTC)
    apps = [demo.application(n, workers=0, now=now) for n in range(1, 6)]
    poisoned = apps[2]["application_id"]
    real_decide = decision_builder.decide

    def decide(app, *args, **kwargs):
        if app.application_id == poisoned:
            raise ZeroDivisionError("a rule's arithmetic failed")
        return real_decide(app, *args, **kwargs)

    monkeypatch.setattr(decision_builder, "decide", decide)
    key = demo.application_record(apps[0])[0]
    async with services(settings, "permit-checker") as running:
        started = time.monotonic()
        await send(
            producer,
            settings.topic_applications,
            [(key, h, v) for _, h, v in (demo.application_record(a) for a in apps)],
        )
        dead = await read_topic(bootstrap, settings.dlq_topic(settings.topic_applications), 1)

        async def four_decided() -> bool:
            return await db.fetchval("SELECT count(*) FROM compliance_decision") == 4

        await eventually(four_decided, timeout=30)
        took = time.monotonic() - started
        retries = running["permit-checker"].metrics.retries.labels("permit-checker")._value.get()
    assert [header(r, "ptsp-gate-error-code") for r in dead] == ["PROCESSING_FAILED"]
    assert "ZeroDivisionError" in (header(dead[0], "ptsp-gate-error-message") or "")
    assert retries >= 1
    assert took < 10, f"isolation took {took:.1f} s"
    decided = {
        r["application_id"]
        for r in await db.fetch("SELECT application_id FROM compliance_decision")
    }
    assert decided == {a["application_id"] for a in apps} - {poisoned}


async def test_a_reused_ce_id_with_other_content_is_answered_and_a_redelivery_absorbed(
    settings, producer, bootstrap, db
):
    now = datetime.now(UTC)
    first, second, third, fourth = (demo.application(n, workers=0, now=now) for n in range(1, 5))
    original = demo.application_record(first, event_id="ID-1")
    async with services(settings, "permit-checker") as running:
        await send(producer, settings.topic_applications, [original])
        await read_topic(bootstrap, settings.topic_decisions, 1)
        # The same bytes again (a producer's retry), then another application under ID-1, then,
        # in one batch, two different applications sharing ID-2.
        await send(
            producer,
            settings.topic_applications,
            [
                # The conflicting event first, the redelivery after it, in one batch.
                demo.application_record(second, event_id="ID-1"),
                original,
                demo.application_record(third, event_id="ID-2"),
                demo.application_record(fourth, event_id="ID-2"),
                # Not even valid, under an accepted id: a conflict too, not silently dropped.
                (b"k", [(k, v) for k, v in original[1]], b'{"application_id": "APP-X"}'),
            ],
        )
        dead = await read_topic(bootstrap, settings.dlq_topic(settings.topic_applications), 3)
        published = await read_topic(
            bootstrap, settings.topic_decisions, 5, distinct=application_id
        )
        metrics = running["permit-checker"].metrics
        absorbed = metrics.duplicates.labels(settings.topic_applications)._value.get()
        conflicts = metrics.dlq_messages.labels(
            settings.dlq_topic(settings.topic_applications), "ID_CONFLICT"
        )._value.get()
    assert sorted(header(r, "ptsp-gate-error-code") for r in dead) == ["ID_CONFLICT"] * 3
    assert sorted(header(r, "ce_id") or "" for r in dead) == ["ID-1", "ID-1", "ID-2"]
    outcomes = {d["application_id"]: d["outcome"] for d in decisions(published)}
    assert outcomes[second["application_id"]] == "REJECTED"
    assert outcomes["APP-X"] == "REJECTED"
    assert outcomes[first["application_id"]] != "REJECTED"
    # Different NIBs, so different partitions, handled concurrently: either may come first.
    pair = sorted(outcomes[a["application_id"]] == "REJECTED" for a in (third, fourth))
    assert pair == [False, True]
    rejected = next(
        d for d in decisions(published) if d["application_id"] == second["application_id"]
    )
    assert "ID_CONFLICT" in json.dumps(rejected["reasons"])
    assert absorbed == 1
    assert conflicts == 3
    # The original was decided once.
    assert (
        await db.fetchval(
            "SELECT count(*) FROM compliance_decision WHERE application_id = $1",
            first["application_id"],
        )
        == 1
    )


async def test_a_poison_record_is_isolated_while_other_partitions_keep_flowing(
    settings, producer, bootstrap, db, monkeypatch
):
    # Batches of the other partitions succeed between the poison batch's retries; the count of
    # failures from the poison's offset must survive them, or it would never be isolated.
    now = datetime.now(UTC)
    poison = demo.application(1, workers=0, now=now)
    real_decide = decision_builder.decide

    def decide(app, *args, **kwargs):
        if app.application_id == poison["application_id"]:
            raise ZeroDivisionError("a rule's arithmetic failed")
        return real_decide(app, *args, **kwargs)

    monkeypatch.setattr(decision_builder, "decide", decide)
    stream = [demo.application(n, workers=0, now=now) for n in range(2, 302)]
    async with services(settings, "permit-checker"):
        started = time.monotonic()
        await send(producer, settings.topic_applications, [demo.application_record(poison)])
        for i in range(0, len(stream), 10):
            await send(
                producer,
                settings.topic_applications,
                [demo.application_record(a) for a in stream[i : i + 10]],
            )
            await asyncio.sleep(0.05)
        dead = await read_topic(bootstrap, settings.dlq_topic(settings.topic_applications), 1)
        took = time.monotonic() - started

        async def all_others_decided() -> bool:
            return await db.fetchval("SELECT count(*) FROM compliance_decision") == len(stream)

        await eventually(all_others_decided, timeout=30)
    assert [header(r, "ptsp-gate-error-code") for r in dead] == ["PROCESSING_FAILED"]
    assert took < 15, f"the poison was isolated after {took:.1f} s"
