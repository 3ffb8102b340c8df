"""The permit gate end to end on a real Kafka-protocol broker and a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest

from ptsp_gate import demo
from ptsp_gate.contract.events import CE_TYPE_DECISION

from .conftest import eventually
from .support import decisions, header, read_topic, send, services

pytestmark = pytest.mark.integration


async def _load_enrolments(producer, settings, db, scenarios) -> None:
    enrolments = [s.enrolment for s in scenarios if s.enrolment is not None]
    await send(producer, settings.topic_enrolment, [demo.enrolment_record(e) for e in enrolments])

    async def applied() -> bool:
        n = await db.fetchval("SELECT count(*) FROM employer_enrolment")
        return n == len(enrolments)

    await eventually(applied)


async def test_every_outcome_and_reason_end_to_end(settings, producer, bootstrap, db) -> None:
    scenarios = demo.scenarios(datetime.now(UTC))
    async with services(settings):
        await _load_enrolments(producer, settings, db, scenarios)
        await send(
            producer,
            settings.topic_applications,
            [demo.application_record(s.application, s.ce_type) for s in scenarios],
        )
        records = await read_topic(bootstrap, settings.topic_decisions, len(scenarios))

    got = {d["application_id"]: d for d in decisions(records)}
    assert len(records) == len(scenarios)
    for s in scenarios:
        d = got[s.application["application_id"]]
        assert (d["outcome"], tuple(r["code"] for r in d["reasons"])) == (
            s.expect_outcome,
            s.expect_codes,
        ), s.name
        assert d["policy_version"]
    seen_codes = {r["code"] for d in got.values() for r in d["reasons"]}
    assert seen_codes == {
        "NOT_REGISTERED",
        "EMPLOYER_INACTIVE",
        "ARREARS",
        "PROGRAMS_MISSING",
        "PDS_WORKERS",
        "PDS_WAGES",
        "SANCTION_REQUESTED",
        "IDENTITY_MISMATCH",
        "ENROLMENT_UNKNOWN",
        "ENROLMENT_STALE",
        "NO_EMPLOYEES_DECLARED",
        "INVALID_EVENT",
    }
    # Envelope of the output: binary-mode CloudEvents keyed by NIB.
    first = records[0]
    assert header(first, "ce_type") == CE_TYPE_DECISION
    assert header(first, "ce_specversion") == "1.0"
    assert header(first, "ce_id") == decisions([first])[0]["decision_id"]
    assert first.key.decode() == decisions([first])[0]["nib"]
    # The officer's view lists exactly the blocked employers.
    flagged = {r["nib"] for r in await db.fetch("SELECT nib FROM flagged_employer")}
    assert flagged == {
        s.application["employer"]["nib"] for s in scenarios if s.expect_outcome == "BLOCKED"
    }
    # The invalid application also went to the DLQ with its reason.
    dlq = await read_topic(bootstrap, settings.dlq_topic(settings.topic_applications), 1)
    assert len(dlq) == 1
    assert header(dlq[0], "ptsp-gate-error-code") == "SCHEMA_VIOLATION"


async def test_the_same_event_three_times_gives_one_decision(settings, producer, bootstrap, db):
    s = demo.scenarios(datetime.now(UTC))[0]
    event_id = str(uuid.uuid4())
    record = demo.application_record(s.application, event_id=event_id)
    async with services(settings, "permit-checker"):
        await send(producer, settings.topic_applications, [record])
        await send(producer, settings.topic_applications, [record, record])
        records = await read_topic(bootstrap, settings.topic_decisions, 1, settle=2.0)
    assert len(records) == 1
    assert await db.fetchval("SELECT count(*) FROM compliance_decision") == 1
    assert await db.fetchval("SELECT count(*) FROM permit_application") == 1


async def test_enrolment_versions_out_of_order_keep_the_newest(settings, producer, db):
    now = datetime.now(UTC)
    v3 = demo.enrolment(1, arrears=0, version=3, now=now)
    v1 = demo.enrolment(1, arrears=9, version=1, now=now)
    v2 = demo.enrolment(1, arrears=5, version=2, now=now)
    async with services(settings, "enrolment-sync") as running:
        for data in (v3, v1, v2, v3):  # the last one is a replay of the newest
            await send(producer, settings.topic_enrolment, [demo.enrolment_record(data)])
        metrics = running["enrolment-sync"].metrics

        async def all_seen() -> bool:
            applied = metrics.enrolment_updates.labels("applied")._value.get()
            stale = metrics.enrolment_updates.labels("stale")._value.get()
            return applied + stale == 4

        await eventually(all_seen)
        row = await db.fetchrow("SELECT version, arrears_months FROM employer_enrolment")
    assert (row["version"], row["arrears_months"]) == (3, 0)
    assert metrics.enrolment_updates.labels("applied")._value.get() == 1


async def test_decisions_keep_per_employer_order(settings, producer, bootstrap):
    now = datetime.now(UTC)
    events = []
    for i in range(300):
        app = demo.application(i % 7, now=now)
        app["application_id"] = f"APP-ORDER-{i:05d}"
        events.append(demo.application_record(app))
    async with services(settings, "permit-checker"):
        await send(producer, settings.topic_applications, events)
        records = await read_topic(bootstrap, settings.topic_decisions, len(events))
    by_nib: dict[str, list[str]] = defaultdict(list)
    for d in decisions(sorted(records, key=lambda r: (r.partition, r.offset))):
        by_nib[d["nib"]].append(d["application_id"])
    assert len(records) == len(events)
    for nib, ids in by_nib.items():
        assert ids == sorted(ids), f"decisions for {nib} out of order"


async def test_bad_input_is_dead_lettered_and_the_partition_keeps_flowing(
    settings, producer, bootstrap, db
):
    now = datetime.now(UTC)
    good = demo.application(1, workers=0, now=now)
    bad_nib = {
        **good,
        "application_id": "APP-BAD-NIB",
        "employer": {**good["employer"], "nib": "12345"},
    }
    bad_npwp = {
        **good,
        "application_id": "APP-BAD-NPWP",
        "employer": {**good["employer"], "npwp": "013000666091001"[:8] + "9" + "091000"},
    }
    renewal_without_previous = {**good, "application_id": "APP-RENEW", "action": "RENEWAL"}
    headers, value = demo.encode(demo.CE_TYPE_APPLICATION, demo.PTSP_SOURCE, good)
    garbage_headers, _ = demo.encode(demo.CE_TYPE_APPLICATION, demo.PTSP_SOURCE, good)
    unknown_headers, unknown_value = demo.encode(
        "id.go.ptsp.permit.cancelled.v1",
        demo.PTSP_SOURCE,
        {**good, "application_id": "APP-UNKNOWN-TYPE"},
    )
    big = {**good, "application_id": "APP-BIG", "padding": "x" * (2 * 1024 * 1024)}
    mismatched = demo.application_record(
        {**good, "application_id": "APP-MISMATCH"}, ce_type=demo.CE_TYPE_RENEWAL
    )
    cases = [
        (b"k", garbage_headers, b"\x00\xff not json"),  # garbage bytes
        (b"k", [("ce_id", b"garbage-1")], b"{}"),  # no CloudEvents attributes  # garbage bytes
        (b"k", [("ce_id", b"x")], None),  # tombstone
        (b"k", headers[:1], value),  # no ce_type etc.
        (b"k", [*headers, ("x-binary", b"\xff\xfe")], b"[1, 2, 3]"),  # wrong schema
        (b"k", unknown_headers, unknown_value),
        demo.application_record(bad_nib),
        demo.application_record(bad_npwp),
        demo.application_record(renewal_without_previous, ce_type=demo.CE_TYPE_RENEWAL),
        demo.application_record(big),
        mismatched,
        demo.application_record(good),  # still decided
    ]
    expected_codes = [
        "MALFORMED_JSON",
        "MALFORMED_ENVELOPE",
        "MALFORMED_ENVELOPE",
        "MALFORMED_ENVELOPE",
        "SCHEMA_VIOLATION",
        "UNKNOWN_TYPE",
        "SCHEMA_VIOLATION",
        "SCHEMA_VIOLATION",
        "SCHEMA_VIOLATION",
        "OVERSIZED",
        "TYPE_ACTION_MISMATCH",
    ]
    async with services(settings, "permit-checker") as running:
        # One key, so all land on one partition in this order: nothing may stall behind them.
        await send(
            producer, settings.topic_applications, [(b"same-key", h, v) for _, h, v in cases]
        )
        dlq = await read_topic(
            bootstrap, settings.dlq_topic(settings.topic_applications), len(expected_codes)
        )
        out = decisions(await read_topic(bootstrap, settings.topic_decisions, 6))
        metrics = running["permit-checker"].metrics
    assert [header(r, "ptsp-gate-error-code") for r in dlq] == expected_codes
    for r in dlq:
        assert header(r, "ptsp-gate-source-topic") == settings.topic_applications
        assert header(r, "ptsp-gate-error-message")
    oversized = dlq[9]
    assert len(oversized.value) <= 64 * 1024
    assert int(header(oversized, "ptsp-gate-original-size")) > 2 * 1024 * 1024
    assert dlq[4].headers[-7] == ("x-binary", b"\xff\xfe")  # original headers kept byte for byte
    outcomes = {d["application_id"]: d["outcome"] for d in out}
    assert outcomes == {
        "APP-UNKNOWN-TYPE": "REJECTED",
        "APP-BAD-NIB": "REJECTED",
        "APP-BAD-NPWP": "REJECTED",
        "APP-RENEW": "REJECTED",
        "APP-MISMATCH": "REJECTED",
        good["application_id"]: "CLEARED",
    }
    rejected = [d for d in out if d["outcome"] == "REJECTED"]
    assert all([r["code"] for r in d["reasons"]] == ["INVALID_EVENT"] for d in rejected)
    bad_nib = next(d for d in rejected if d["application_id"] == "APP-BAD-NIB")
    assert bad_nib["nib"] == "12345"
    assert "employer.nib" in str(bad_nib["reasons"][0]["details"])
    dlq_counts: Counter[str] = Counter()
    for family in metrics.registry.collect():
        if family.name == "ptsp_gate_dlq_messages":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    dlq_counts[sample.labels["error"]] += int(sample.value)
    assert dlq_counts == Counter(expected_codes)


async def test_what_a_transactional_producer_aborted_is_never_decided(
    kafka_cluster, settings, bootstrap, db
) -> None:
    from aiokafka import AIOKafkaProducer

    from ptsp_gate.embedded import MockKafkaCluster

    if isinstance(kafka_cluster, MockKafkaCluster):
        pytest.skip("the mock cluster's transaction markers fail aiokafka's CRC check")
    now = datetime.now(UTC)

    def record(application_id: str, n: int):
        app = demo.application(n, now=now)
        app["application_id"] = application_id
        return demo.application_record(app)

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"licensing-{uuid.uuid4().hex[:8]}"
    )
    await producer.start()
    try:
        async with services(settings, "permit-checker"):
            await producer.begin_transaction()
            for i in range(5):
                key, headers, value = record(f"APP-ABORTED-{i}", i)
                await producer.send(settings.topic_applications, value, key=key, headers=headers)
            await producer.abort_transaction()
            async with producer.transaction():
                for i in range(5):
                    key, headers, value = record(f"APP-COMMITTED-{i}", i)
                    await producer.send(
                        settings.topic_applications, value, key=key, headers=headers
                    )
            records = await read_topic(bootstrap, settings.topic_decisions, 5, settle=2)
    finally:
        await producer.stop()
    decided = sorted(d["application_id"] for d in decisions(records))
    assert decided == [f"APP-COMMITTED-{i}" for i in range(5)]
    assert (
        await db.fetchval(
            "SELECT count(*) FROM permit_application WHERE application_id LIKE 'APP-ABORTED-%'"
        )
        == 0
    )
