"""An outbox row the broker refuses for good is parked, and the rows behind it are published;
`ptsp-gate outbox parked | retry` show and requeue parked rows. On the real broker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ptsp_gate import demo
from ptsp_gate.adapters import kafka
from ptsp_gate.config import Settings
from ptsp_gate.contract.cloudevents import pack_headers
from ptsp_gate.observability.metrics import Metrics
from ptsp_gate.runtime.relay import OutboxRelay
from ptsp_gate.stores import outbox

from .conftest import eventually
from .support import header, read_topic, send, services

pytestmark = pytest.mark.integration


def _env(settings: Settings) -> dict[str, str]:
    import os

    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(settings.kafka_bootstrap_servers),
        "DATABASE_URL": settings.dsn(),
    }


async def _outbox(settings: Settings, *argv: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ptsp_gate.cli.main", "outbox", *argv],
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


async def _queue(db, topic: str, values: list[bytes]) -> list[int]:
    rows = await db.fetch(
        "INSERT INTO outbox (topic, key, headers, value, kind)"
        " SELECT $1, 'k'::bytea, $2, v, 'decision' FROM unnest($3::bytea[]) AS v RETURNING id",
        topic,
        pack_headers([("ce_id", b"x")]),
        values,
    )
    return [r["id"] for r in rows]


async def test_a_row_too_large_to_publish_is_parked_and_later_rows_flow(settings, bootstrap, db):
    too_large = b"x" * (settings.max_event_bytes + 512 * 1024)
    ids = await _queue(db, settings.topic_decisions, [b"first", too_large, b"third"])
    metrics = Metrics()
    relay = OutboxRelay(
        dsn=settings.dsn(), producer_factory=lambda: kafka.make_producer(settings), metrics=metrics
    )
    relay.start()
    try:
        published = await read_topic(bootstrap, settings.topic_decisions, 2)

        async def drained() -> bool:
            return await db.fetchval("SELECT count(*) FROM outbox") == 0

        await eventually(drained, timeout=30)
    finally:
        await relay.stop()
    assert [r.value for r in published] == [b"first", b"third"]
    parked = await db.fetch("SELECT id, error FROM outbox_parked")
    assert [r["id"] for r in parked] == [ids[1]]
    assert "MessageSizeTooLarge" in parked[0]["error"]
    await outbox.sample_backlog(db, metrics)
    assert metrics.outbox_parked._value.get() == 1

    listed = await _outbox(settings, "parked", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["id"] == ids[1]
    assert row["bytes"] > len(too_large)
    assert "MessageSizeTooLarge" in row["error"]
    assert "xxxx" not in listed.stdout  # what is parked is described, never shown
    table = await _outbox(settings, "parked")
    assert str(ids[1]) in table.stdout

    unknown = await _outbox(settings, "retry", str(ids[1]), "999999999")
    assert unknown.returncode == 1
    assert "no parked outbox row with id 999999999; nothing was queued" in unknown.stderr
    assert await db.fetchval("SELECT count(*) FROM outbox_parked") == 1
    missing = await _outbox(settings, "retry")
    assert missing.returncode != 0
    assert missing.stderr.count("\n") == 1

    retried = await _outbox(settings, "retry", str(ids[1]))
    assert retried.returncode == 0, retried.stderr
    assert f"outbox row {ids[1]} queued again" in retried.stdout
    assert await db.fetchval("SELECT count(*) FROM outbox_parked") == 0
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE length(value) > 1000000") == 1


async def test_megabytes_of_headers_give_a_publishable_dead_letter(
    settings, producer, bootstrap, db
):
    # The record is over the input limit through its headers alone; its dead letter keeps what
    # fits and names the rest, so it publishes and the decisions behind it do too.
    now = datetime.now(UTC)
    apps = [demo.application(n, workers=0, now=now) for n in range(1, 3)]
    key, headers, value = demo.application_record(apps[0])
    junk = [(f"x-junk-{i}", b"j" * 300_000) for i in range(5)]
    behind = [(key, h, v) for _, h, v in (demo.application_record(a) for a in apps)]
    async with services(settings, "permit-checker"):
        await send(
            producer, settings.topic_applications, [(key, [*headers, *junk], value), *behind]
        )
        dead = await read_topic(bootstrap, settings.dlq_topic(settings.topic_applications), 1)
        decided = await read_topic(bootstrap, settings.topic_decisions, len(apps))
    assert header(dead[0], "ptsp-gate-error-code") == "OVERSIZED"
    assert header(dead[0], "ptsp-gate-truncated") == ",".join(
        f"header:x-junk-{i}" for i in range(5)
    )
    assert sum(len(v or b"") for _, v in dead[0].headers) < 70_000
    assert {h for h, _ in dead[0].headers} >= {"ce_id", "ce_type", "ptsp-gate-error-code"}
    assert len(decided) == len(apps)
    assert await db.fetchval("SELECT count(*) FROM outbox_parked") == 0


async def test_a_row_the_broker_refuses_is_parked_alone(apache_cluster, settings, bootstrap, db):
    # The topic takes records of at most 2 KiB, so the broker refuses the whole record batch
    # that holds the 5 KiB row: its neighbours in that batch are sent again alone and published.
    topic = f"small-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, 1, 3, topic_configs={"max.message.bytes": "2048"})]
        )
    finally:
        await admin.close()
    try:
        ids = await _queue(db, topic, [b"a", b"x" * 5000, b"c"])
        relay = OutboxRelay(
            dsn=settings.dsn(),
            producer_factory=lambda: kafka.make_producer(settings),
            metrics=Metrics(),
        )
        relay.start()
        try:
            published = await read_topic(bootstrap, topic, 2)

            async def drained() -> bool:
                return await db.fetchval("SELECT count(*) FROM outbox") == 0

            await eventually(drained, timeout=30)
        finally:
            await relay.stop()
        assert sorted(r.value for r in published) == [b"a", b"c"]
        parked = await db.fetch("SELECT id, error FROM outbox_parked")
        assert [r["id"] for r in parked] == [ids[1]]
        assert "TooLarge" in parked[0]["error"]
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
