"""Failures in the middle of a stream: nothing lost, nothing decided twice."""

from __future__ import annotations

import asyncio
import signal

import pytest
from pydantic import SecretStr

from ptsp_gate.embedded import harness

from .conftest import eventually
from .support import (
    application_id,
    assert_exactly_once,
    assert_none_lost,
    events,
    read_topic,
    send,
    service_process,
    services,
)

pytestmark = pytest.mark.integration


async def test_whole_cluster_hung_mid_stream_loses_and_duplicates_nothing(
    apache_cluster, settings, producer, bootstrap, db
):
    # Every node SIGSTOPped at once: no leader anywhere, connections open but silent, as a
    # cluster-wide stall looks to clients. The service retries; nothing is skipped.
    n = 1500
    async with services(settings, "permit-checker"):
        await send(producer, settings.topic_applications, events(n, "OUT"))

        async def some_decided() -> bool:
            return await db.fetchval("SELECT count(*) FROM compliance_decision") > 0

        await eventually(some_decided)
        for node in apache_cluster.nodes:
            apache_cluster.pause(node.node_id)
        await asyncio.sleep(5)
        for node in apache_cluster.nodes:
            apache_cluster.resume(node.node_id)
        records = await read_topic(
            bootstrap, settings.topic_decisions, n, timeout=120, settle=2, distinct=application_id
        )
    assert_none_lost(records, n)
    assert await db.fetchval("SELECT count(*) FROM compliance_decision") == n
    assert await db.fetchval("SELECT count(DISTINCT application_id) FROM compliance_decision") == n
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0


async def test_database_connections_killed_mid_stream_lose_nothing(
    settings, producer, bootstrap, db
):
    n = 1500
    database = await db.fetchval("SELECT current_database()")
    async with services(settings, "permit-checker") as running:
        await send(producer, settings.topic_applications, events(n, "PGKILL"))

        async def some_decided() -> bool:
            return await db.fetchval("SELECT count(*) FROM compliance_decision") > 0

        await eventually(some_decided)

        async def kill_connections() -> bool:
            # Right after a kill the service may hold no connection yet: wait for one.
            killed = await db.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
            return bool(killed)

        for _ in range(3):
            await eventually(kill_connections, timeout=10, interval=0.05)
            await asyncio.sleep(0.3)
        records = await read_topic(
            bootstrap, settings.topic_decisions, n, timeout=90, settle=2, distinct=application_id
        )
        retries = running["permit-checker"].metrics.retries
    assert_none_lost(records, n)
    assert await db.fetchval("SELECT count(*) FROM compliance_decision") == n
    assert (
        sum(s.value for m in retries.collect() for s in m.samples if s.name.endswith("_total")) > 0
    )


@pytest.mark.apache_kafka_only
async def test_sigterm_while_busy_drains_commits_and_resumes(settings, producer, bootstrap, db):
    n = 6000
    await send(producer, settings.topic_applications, events(n, "TERM"))
    proc = service_process(settings, "permit-checker")
    try:

        async def some_decided() -> bool:
            return await db.fetchval("SELECT count(*) FROM compliance_decision") > 200

        await eventually(some_decided, timeout=30)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        output = proc.output()
        assert code == 0, output[-2000:]
        assert "service stopped" in output
    finally:
        if proc.poll() is None:
            proc.kill()
    decided_before = await db.fetchval("SELECT count(*) FROM compliance_decision")
    assert decided_before < n  # stopped while busy, not after the work was done
    # Drained: everything committed in PostgreSQL was also published before exit.
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0
    published = await read_topic(bootstrap, settings.topic_decisions, decided_before, timeout=10)
    assert len(published) == decided_before

    restarted = service_process(settings, "permit-checker")
    try:

        async def all_decided() -> bool:
            return await db.fetchval("SELECT count(*) FROM compliance_decision") == n

        await eventually(all_decided, timeout=60)
        records = await read_topic(bootstrap, settings.topic_decisions, n, timeout=60, settle=2)
    finally:
        restarted.send_signal(signal.SIGTERM)
        await asyncio.to_thread(restarted.wait, 30)
    assert_exactly_once(records, n)
    assert len(records) == n


async def test_service_refuses_to_start_on_an_unmigrated_database(settings, server_dsn):
    empty = await harness.create_database(server_dsn, "ptsp_gate_empty")
    proc = service_process(
        settings.model_copy(update={"database_url": SecretStr(empty)}), "permit-checker"
    )
    code = await asyncio.to_thread(proc.wait, 30)
    out = proc.output()
    assert code == 1
    assert "run `ptsp-gate migrate`" in out.strip().splitlines()[-1]


async def test_a_consumer_that_cannot_start_ends_the_process(settings) -> None:
    # Nothing listens on the port: the broker cannot start after the HTTP side is up. The
    # process must end non-zero (so it is restarted), not serve probes with nothing consuming.
    proc = service_process(
        settings.model_copy(update={"kafka_bootstrap_servers": ["127.0.0.1:9"]}), "permit-checker"
    )
    try:
        code = await asyncio.to_thread(proc.wait, 90)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = proc.output()
    assert code == 1, out[-3000:]
    assert (
        "ptsp-gate run: permit-checker: the Kafka consumer stopped (see the log above)"
        in out.splitlines()
    )
