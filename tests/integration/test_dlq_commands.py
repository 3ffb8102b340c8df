"""`ptsp-gate dlq list | replay` against a real Kafka-protocol broker and a real PostgreSQL, with
the permit-checker running: records dead-lettered, listed, fixed, replayed and decided once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from ptsp_gate import demo
from ptsp_gate.adapters import migrations
from ptsp_gate.adapters.postgres import connect
from ptsp_gate.config import Settings
from ptsp_gate.contract.events import CE_TYPE_APPLICATION
from ptsp_gate.dlq.records import DeadLetter
from ptsp_gate.embedded import harness
from ptsp_gate.stores import dlq_replays
from ptsp_gate_permit_checker import checker

from ..cli_helpers import console
from .conftest import eventually
from .support import decisions, header, read_topic, send, services

# Delivery behaviour, proved on Apache Kafka in the first pass; the PostgreSQL it needs is the
# same on every version, so the second pass leaves it out.
pytestmark = [pytest.mark.integration, pytest.mark.apache_kafka_only]

NIK = "7314015505900001"
PARTITIONS_PLUS = 7  # beyond the test topics' partition count


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**harness.settings_env(settings), **extra}


async def _dlq(settings: Settings, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(console, "dlq", *argv, env=_env(settings, **env), timeout=90)


def _by_application(records: list[Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for d in decisions(records):
        out.setdefault(d["application_id"], []).append(d["outcome"])
    return out


async def test_a_fixed_record_is_replayed_once_and_decided(
    settings, producer, bootstrap, db, monkeypatch
) -> None:
    now = datetime.now(UTC)
    good = demo.application(1, workers=0, now=now)
    renewal = demo.application(2, action="RENEWAL", workers=0, now=now)
    bad_nib = {**good, "application_id": "APP-BAD-NIB", "employer": {**good["employer"]}}
    bad_nib["employer"]["nib"] = "12345"
    json_headers, _ = demo.encode(CE_TYPE_APPLICATION, demo.PTSP_SOURCE, good)
    renewal_record = demo.application_record(renewal)
    renewal_ce_id = dict(renewal_record[1])["ce_id"].decode()
    dlq_topic = settings.dlq_topic(settings.topic_applications)

    # A release that wrongly refuses renewals: they are dead-lettered as UNKNOWN_TYPE.
    monkeypatch.setattr(checker, "ACCEPTED_TYPES", (CE_TYPE_APPLICATION,))
    async with services(settings, "permit-checker"):
        await send(
            producer,
            settings.topic_applications,
            [
                (NIK.encode(), json_headers, b'{"application_id": "APP-JSON", '),
                demo.application_record(bad_nib),
                renewal_record,
                demo.application_record(good),
            ],
        )
        dead = await read_topic(bootstrap, dlq_topic, 3)
        first = _by_application(await read_topic(bootstrap, settings.topic_decisions, 3))
        assert sorted(header(r, "ptsp-gate-error-code") for r in dead) == [
            "MALFORMED_JSON",
            "SCHEMA_VIOLATION",
            "UNKNOWN_TYPE",
        ]
        assert first[renewal["application_id"]] == ["REJECTED"]
        # Dead-lettering did not take the event id: a replay of it can still be decided.
        assert not await db.fetchval(
            "SELECT count(*) FROM processed_event WHERE event_key = $1", renewal_ce_id
        )
        unknown = next(r for r in dead if header(r, "ptsp-gate-error-code") == "UNKNOWN_TYPE")
        address = f"{dlq_topic}/{unknown.partition}/{unknown.offset}"

        listed = await _dlq(settings, "list", "--format", "json")
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert len(rows) == 3
        row = next(r for r in rows if r["address"] == address)
        assert row["error_code"] == "UNKNOWN_TYPE"
        assert row["source_topic"] == settings.topic_applications
        assert (row["source_partition"], row["source_offset"]) == (
            int(header(unknown, "ptsp-gate-source-partition")),
            int(header(unknown, "ptsp-gate-source-offset")),
        )
        assert row["key"] == renewal["employer"]["nib"]
        assert row["event_id"] == renewal_ce_id
        assert row["replay_state"] is None
        assert row["size"] == len(unknown.value)

        table = await _dlq(settings, "list", "--topic", settings.topic_applications)
        assert table.returncode == 0, table.stderr
        assert "3 dead-lettered record(s), 0 replayed" in table.stdout
        assert NIK not in table.stdout  # the key of the malformed record is masked
        assert "*" * 12 + NIK[-4:] in table.stdout

        one = await _dlq(settings, "list", "--error", "UNKNOWN_TYPE", "--format", "csv")
        assert one.returncode == 0, one.stderr
        assert len(one.stdout.strip().splitlines()) == 2
        assert address in one.stdout

        dry = await _dlq(settings, "replay", address, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"would replay      {address} -> {settings.topic_applications}" in dry.stdout
        assert "nothing was published" in dry.stdout
        assert await db.fetchval("SELECT count(*) FROM dlq_replay") == 0

        # The fixed release is deployed; the renewal is replayed and decided.
        monkeypatch.undo()
        replayed = await _dlq(settings, "replay", address)
        assert replayed.returncode == 0, replayed.stderr
        assert f"replayed          {address} -> {settings.topic_applications}/" in replayed.stdout
        after = _by_application(await read_topic(bootstrap, settings.topic_decisions, 4))
        assert after[renewal["application_id"]] == ["REJECTED", "CLEARED"]

        again = await _dlq(settings, "replay", address)
        assert again.returncode == 0, again.stderr
        assert f"already replayed  {address}" in again.stdout
        assert "replayed 0, already replayed 1" in again.stdout

        # Still bad after a replay: dead-lettered again, visibly, not dropped as a duplicate.
        still_bad = await _dlq(settings, "replay", "--error", "MALFORMED_JSON")
        assert still_bad.returncode == 0, still_bad.stderr
        dead_again = await read_topic(bootstrap, dlq_topic, 4)
        final = _by_application(await read_topic(bootstrap, settings.topic_decisions, 4, settle=2))

    source = await read_topic(bootstrap, settings.topic_applications, 6)
    assert len(source) == 6  # four sent, two replayed, the repeated replay published nothing
    copy = next(r for r in source if header(r, "ptsp-gate-replayed-from") == address)
    assert copy.value == unknown.value
    assert copy.key == unknown.key
    assert copy.partition == unknown.partition
    assert not [k for k, _ in copy.headers if k.startswith("ptsp-gate-error")]
    assert [h for h in copy.headers if not h[0].startswith("ptsp-gate-")] == [
        h for h in renewal_record[1]
    ]
    assert final[renewal["application_id"]] == ["REJECTED", "CLEARED"]  # decided exactly once
    assert len(dead_again) == 4
    [replay_failed] = [r for r in dead_again if header(r, "ptsp-gate-replayed-from")]
    assert header(replay_failed, "ptsp-gate-error-code") == "MALFORMED_JSON"
    ledger = await db.fetchrow("SELECT * FROM dlq_replay WHERE dlq_offset = $1", unknown.offset)
    assert ledger["state"] == "published"
    assert ledger["target_topic"] == settings.topic_applications
    assert ledger["event_id"] == renewal_ce_id
    assert (ledger["target_partition"], ledger["target_offset"]) == (copy.partition, copy.offset)

    listed = json.loads((await _dlq(settings, "list", "--format", "json")).stdout)
    row = next(r for r in listed if r["address"] == address)
    assert row["replay_state"] == "published"
    assert row["replay_target"] == f"{copy.topic}/{copy.partition}/{copy.offset}"


def _dead_letter(
    settings: Settings, record: tuple[bytes, list[tuple[str, bytes]], bytes], **override: bytes
) -> tuple[bytes, list[tuple[str, bytes]], bytes]:
    """A record as the services dead-letter it, with some of the added headers overridden (or
    dropped, given b"")."""
    added = {
        "ptsp-gate-error-code": b"PROCESSING_FAILED",
        "ptsp-gate-error-message": b"could not serialize access",
        "ptsp-gate-source-topic": settings.topic_applications.encode(),
        "ptsp-gate-source-partition": b"0",
        "ptsp-gate-source-offset": b"0",
        "ptsp-gate-failed-at": datetime.now(UTC).isoformat().encode(),
    }
    added.update({k.replace("_", "-"): v for k, v in override.items()})
    key, headers, value = record
    return key, [*headers, *((k, v) for k, v in added.items() if v)], value


async def test_records_that_cannot_be_replayed_are_refused_and_nothing_is_published(
    settings, producer, bootstrap, db
) -> None:
    now = datetime.now(UTC)
    dlq_topic = settings.dlq_topic(settings.topic_applications)
    app = demo.application_record(demo.application(3, now=now))
    await send(
        producer,
        dlq_topic,
        [
            (b"k", *_dead_letter(settings, app, ptsp_gate_source_topic=b"")[1:]),
            _dead_letter(settings, app, ptsp_gate_source_topic=b"somewhere.else"),
            _dead_letter(
                settings,
                app,
                ptsp_gate_error_code=b"OVERSIZED",
                ptsp_gate_original_size=b"2000000",
            ),
            _dead_letter(settings, app),  # replayable, but not published with the others
        ],
    )
    records = await read_topic(bootstrap, dlq_topic, 4)
    no_source = next(r for r in records if r.key == b"k")
    address = f"{dlq_topic}/{no_source.partition}/{no_source.offset}"

    one = await _dlq(settings, "replay", address)
    assert one.returncode == 1
    assert one.stderr.strip().splitlines() == [
        f"ptsp-gate dlq: cannot replay {address}: it has no ptsp-gate-source-topic header, so "
        "where it came from is unknown; nothing was published"
    ]

    every = await _dlq(settings, "replay", "--all", "--topic", settings.topic_applications)
    assert every.returncode == 1
    lines = every.stderr.strip().splitlines()
    assert len(lines) == 3
    assert any("'somewhere.else' is not an input topic" in line for line in lines)
    assert any("OVERSIZED" in line for line in lines)
    assert lines[-1].endswith("; nothing was published")

    assert await read_topic(bootstrap, settings.topic_applications, 0, timeout=1) == []
    assert await db.fetchval("SELECT count(*) FROM dlq_replay") == 0


async def test_bad_selections_and_an_unreachable_cluster_fail_in_one_line(
    settings, producer, bootstrap
) -> None:
    dlq_topic = settings.dlq_topic(settings.topic_applications)
    empty = await _dlq(settings, "list")
    assert (empty.returncode, empty.stdout) == (0, "No dead-lettered records.\n")
    nothing = await _dlq(settings, "replay", "--error", "OVERSIZED")
    assert nothing.returncode == 0, nothing.stderr
    assert nothing.stdout == "Nothing to replay: no dead-lettered record matches.\n"

    app = demo.application_record(demo.application(4, now=datetime.now(UTC)))
    await send(producer, dlq_topic, [_dead_letter(settings, app)])
    [record] = await read_topic(bootstrap, dlq_topic, 1)
    p = str(record.partition)

    cases = [
        (("replay", "--topic", dlq_topic, "--partition", p, "--offset", "5"), 1, "beyond the end"),
        (("replay", f"{dlq_topic}/{PARTITIONS_PLUS}/0"), 1, "there is no partition"),
        (("replay", "nowhere/0/0"), 2, "unknown topic 'nowhere'"),
        (("list", "--topic", "nowhere"), 2, "unknown topic 'nowhere'"),
        (("replay", "--partition", "0", "--offset", "1"), 2, "need --topic"),
    ]
    for argv, code, text in cases:
        out = await _dlq(settings, *argv)
        assert out.returncode == code, (argv, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, (argv, out.stderr)
        assert text in out.stderr, (argv, out.stderr)
    assert await read_topic(bootstrap, settings.topic_applications, 0, timeout=1) == []

    start = time.monotonic()
    down = await _dlq(settings, "list", "--timeout", "3", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9")
    assert down.returncode == 1
    assert len(down.stderr.strip().splitlines()) == 1, down.stderr
    assert "127.0.0.1" in down.stderr or "Kafka" in down.stderr
    assert time.monotonic() - start < 30


async def test_an_interrupted_replay_is_completed_and_decided_once(
    settings, producer, bootstrap, db
) -> None:
    dlq_topic = settings.dlq_topic(settings.topic_applications)
    application = demo.application(5, workers=0, now=datetime.now(UTC))
    original = demo.application_record(application)
    await send(producer, dlq_topic, [_dead_letter(settings, original)])
    [record] = await read_topic(bootstrap, dlq_topic, 1)
    dead = DeadLetter.from_record(record)
    address = str(dead.address)
    # A run that claimed the replay and published it, then died before recording the ack.
    await dlq_replays.claim(db, [(dead, settings.topic_applications)], "crashed@host")
    await send(
        producer, settings.topic_applications, [(dead.key, dead.replay_headers(), dead.value)]
    )

    listed = json.loads((await _dlq(settings, "list", "--format", "json")).stdout)
    assert [r["replay_state"] for r in listed] == ["claimed"]
    table = await _dlq(settings, "list")
    assert "in progress" in table.stdout

    async with services(settings, "permit-checker"):
        resumed = await _dlq(settings, "replay", address)
        assert resumed.returncode == 0, resumed.stderr
        assert f"replayed          {address}" in resumed.stdout
        out = await read_topic(bootstrap, settings.topic_decisions, 1, settle=2)
    assert _by_application(out) == {application["application_id"]: ["CLEARED"]}
    copies = await read_topic(bootstrap, settings.topic_applications, 2)
    assert len(copies) == 2  # published at least once; decided once
    row = await db.fetchrow("SELECT state, claimed_by FROM dlq_replay")
    assert (row["state"], row["claimed_by"]) == ("published", "crashed@host")


async def test_dead_letters_leave_the_event_id_free_but_still_dedupe(
    settings, producer, bootstrap, db
) -> None:
    now = datetime.now(UTC)
    application = demo.application(6, workers=0, now=now)
    event_id = str(uuid.uuid4())
    _, headers, value = demo.application_record(application, event_id=event_id)
    key = application["employer"]["nib"].encode()
    broken = (key, headers, value[:-1])
    async with services(settings, "permit-checker"):
        await send(producer, settings.topic_applications, [broken])
        await read_topic(bootstrap, settings.dlq_topic(settings.topic_applications), 1)
        await send(producer, settings.topic_applications, [broken])  # the same bytes again
        # The producer fixes it and resends under the same id: decided, not a duplicate.
        await send(producer, settings.topic_applications, [(key, headers, value)])

        async def decided() -> bool:
            n = await db.fetchval(
                "SELECT count(*) FROM permit_application WHERE event_id = $1", event_id
            )
            return n == 1

        await eventually(decided)
        # A broken copy of an accepted event is another event under its id: an ID conflict,
        # dead-lettered (not dropped without a trace); it has no application_id to answer.
        await send(producer, settings.topic_applications, [(key, headers, b"[]")])
        await send(producer, settings.topic_applications, [demo.application_record(application)])
        out = await read_topic(bootstrap, settings.topic_decisions, 2, settle=2)
        dead = await read_topic(bootstrap, settings.dlq_topic(settings.topic_applications), 2)
    assert [header(r, "ptsp-gate-error-code") for r in dead] == ["MALFORMED_JSON", "ID_CONFLICT"]
    assert sorted(d["outcome"] for d in decisions(out)) == ["CLEARED", "CLEARED"]


async def test_migration_releases_event_ids_that_dead_letters_took(server_dsn, monkeypatch):
    dsn = await harness.create_database(server_dsn, "ptsp_gate_dlqmig")
    conn = await connect(dsn)
    try:
        every = migrations.available()
        before = [m for m in every if m.version < 3]
        monkeypatch.setattr(migrations, "available", lambda: before)
        await migrations.migrate(conn)
        await conn.execute(
            "INSERT INTO permit_application (event_id, application_id, action, nib, npwp,"
            " region_code, scale, workers_declared, submitted_at, payload)"
            " VALUES ('accepted', 'APP-1', 'NEW', '9120000000001', '013000666091000', '7314',"
            " 'MIKRO', 0, now(), '{}')"
        )
        await conn.execute(
            "INSERT INTO processed_event (topic, event_key) VALUES ('apps', 'accepted'),"
            " ('apps', 'dead-lettered'), ('apps', 'sha256:00ff'), ('enrol', 'bad-enrolment')"
        )
        monkeypatch.setattr(migrations, "available", lambda: every)
        assert await migrations.migrate(conn) == [m.name for m in every if m.version >= 3]
        kept = await conn.fetch("SELECT topic, event_key FROM processed_event ORDER BY 1, 2")
        assert [tuple(r) for r in kept] == [("apps", "accepted"), ("apps", "sha256:00ff")]
    finally:
        await conn.close()
        await harness.drop_database(server_dsn, dsn)


async def test_an_enrolment_replay_that_still_fails_is_dead_lettered_again(
    settings, producer, bootstrap
) -> None:
    dlq_topic = settings.dlq_topic(settings.topic_enrolment)
    state = demo.enrolment(7, now=datetime.now(UTC))
    key, headers, _ = demo.enrolment_record({**state, "status": "SLEEPING"})
    bad = (key, headers, json.dumps({**state, "status": "SLEEPING"}).encode())
    async with services(settings, "enrolment-sync"):
        await send(producer, settings.topic_enrolment, [bad])
        [dead] = await read_topic(bootstrap, dlq_topic, 1)
        await send(producer, settings.topic_enrolment, [bad])  # the same bytes: deduplicated
        listed = await _dlq(
            settings, "list", "--topic", settings.topic_enrolment, "--format", "json"
        )
        replayed = await _dlq(settings, "replay", "--all", "--topic", dlq_topic)
        assert replayed.returncode == 0, replayed.stderr
        again = await read_topic(bootstrap, dlq_topic, 2, settle=2)
    assert [r["error_code"] for r in json.loads(listed.stdout)] == ["SCHEMA_VIOLATION"]
    assert len(again) == 2
    assert header(again[1], "ptsp-gate-replayed-from") == f"{dlq_topic}/{dead.partition}/0"
    assert header(again[1], "ptsp-gate-error-code") == "SCHEMA_VIOLATION"
