"""Failures in the middle of a stream: nothing lost, nothing decided twice."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime

import asyncpg
import pytest

from ptsp_gate import demo

from .conftest import eventually
from .support import decisions, read_topic, send, services

pytestmark = pytest.mark.integration


def _events(n: int, tag: str) -> list[tuple[bytes, list[tuple[str, bytes]], bytes]]:
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        app = demo.application(i % 50, workers=0, now=now)
        app["application_id"] = f"APP-{tag}-{i:06d}"
        out.append(demo.application_record(app))
    return out


def _assert_none_lost(records, n: int) -> None:
    """At-least-once on the wire: a relay that dies between publishing and recording it
    republishes. Any copy must be byte-identical, so consumers dedupe by decision_id."""
    apps = {d["application_id"] for d in decisions(records)}
    assert len(apps) == n, f"{n - len(apps)} decisions lost"
    by_id: dict[str, set[bytes]] = {}
    for r in records:
        by_id.setdefault(decisions([r])[0]["decision_id"], set()).add(r.value)
    assert len(by_id) == n
    assert all(len(values) == 1 for values in by_id.values()), "a redelivery differs"


def _assert_exactly_once(records, n: int) -> None:
    ids = Counter(d["decision_id"] for d in decisions(records))
    apps = {d["application_id"] for d in decisions(records)}
    assert len(apps) == n, f"{n - len(apps)} decisions lost"
    duplicates = {k: v for k, v in ids.items() if v > 1}
    assert not duplicates, f"{len(duplicates)} decisions published more than once"


async def test_broker_outage_mid_stream_loses_and_duplicates_nothing(
    kafka_cluster, settings, producer, bootstrap, db
):
    if kafka_cluster is None:
        pytest.skip("needs the embedded cluster's fault injection")
    n = 1500
    async with services(settings, "permit-checker"):
        await send(producer, settings.topic_applications, _events(n, "OUT"))

        async def some_decided() -> bool:
            return await db.fetchval("SELECT count(*) FROM compliance_decision") > 0

        await eventually(some_decided)
        kafka_cluster.all_brokers_down()
        await asyncio.sleep(4)
        kafka_cluster.all_brokers_up()
        records = await read_topic(bootstrap, settings.topic_decisions, n, timeout=90, settle=2)
    _assert_exactly_once(records, n)
    assert await db.fetchval("SELECT count(*) FROM compliance_decision") == n
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0


async def test_database_connections_killed_mid_stream_lose_nothing(
    settings, producer, bootstrap, db
):
    n = 1500
    database = await db.fetchval("SELECT current_database()")
    async with services(settings, "permit-checker") as running:
        await send(producer, settings.topic_applications, _events(n, "PGKILL"))

        async def some_decided() -> bool:
            return await db.fetchval("SELECT count(*) FROM compliance_decision") > 0

        await eventually(some_decided)
        for _ in range(3):
            killed = await db.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
            assert killed > 0
            await asyncio.sleep(0.3)
        records = await read_topic(bootstrap, settings.topic_decisions, n, timeout=90, settle=2)
        retries = running["permit-checker"].metrics.retries
    _assert_none_lost(records, n)
    assert await db.fetchval("SELECT count(*) FROM compliance_decision") == n
    assert (
        sum(s.value for m in retries.collect() for s in m.samples if s.name.endswith("_total")) > 0
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _service_process(
    settings,
    name: str,
    port: int | None = None,
    *extra: str,
    env_extra: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(settings.kafka_bootstrap_servers),
        "DATABASE_URL": settings.database_url,
        "PTSP_GATE_TOPIC_APPLICATIONS": settings.topic_applications,
        "PTSP_GATE_TOPIC_ENROLMENT": settings.topic_enrolment,
        "PTSP_GATE_TOPIC_DECISIONS": settings.topic_decisions,
        "PTSP_GATE_GROUP_PERMIT_CHECKER": settings.group_permit_checker,
        "PTSP_GATE_BATCH_MAX_RECORDS": "200",
        **(env_extra or {}),
    }
    output = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the process object
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ptsp_gate.cli.main",
            "run",
            name,
            "--port",
            str(port or _free_port()),
            "--host",
            "127.0.0.1",
            *extra,
        ],
        env=env,
        # A file, not a pipe: a busy service logs a line per decision and would fill a pipe
        # that nobody reads until the end, then block on it.
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    proc.output_file = output  # type: ignore[attr-defined]
    return proc


def _output(proc: subprocess.Popen[bytes]) -> str:
    """Everything the process has written so far (stdout and stderr)."""
    output = proc.output_file  # type: ignore[attr-defined]
    output.seek(0)
    return output.read().decode(errors="replace")


async def test_sigterm_while_busy_drains_commits_and_resumes(settings, producer, bootstrap, db):
    n = 6000
    await send(producer, settings.topic_applications, _events(n, "TERM"))
    proc = _service_process(settings, "permit-checker")
    try:

        async def some_decided() -> bool:
            return await db.fetchval("SELECT count(*) FROM compliance_decision") > 200

        await eventually(some_decided, timeout=30)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        output = _output(proc)
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

    restarted = _service_process(settings, "permit-checker")
    try:

        async def all_decided() -> bool:
            return await db.fetchval("SELECT count(*) FROM compliance_decision") == n

        await eventually(all_decided, timeout=60)
        records = await read_topic(bootstrap, settings.topic_decisions, n, timeout=60, settle=2)
    finally:
        restarted.send_signal(signal.SIGTERM)
        await asyncio.to_thread(restarted.wait, 30)
    _assert_exactly_once(records, n)
    assert len(records) == n


async def test_service_refuses_to_start_on_an_unmigrated_database(settings, server_dsn):
    name = "ptsp_gate_empty_" + os.urandom(4).hex()
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    from .conftest import _with_database

    proc = _service_process(
        settings.model_copy(update={"database_url": _with_database(server_dsn, name)}),
        "permit-checker",
    )
    code = await asyncio.to_thread(proc.wait, 30)
    out = _output(proc)
    assert code == 1
    assert "run `ptsp-gate migrate`" in out.strip().splitlines()[-1]


async def test_a_consumer_that_cannot_start_ends_the_process(settings) -> None:
    # Nothing listens on the port: the broker cannot start after the HTTP side is up. The
    # process must end non-zero (so it is restarted), not serve probes with nothing consuming.
    proc = _service_process(
        settings.model_copy(update={"kafka_bootstrap_servers": ["127.0.0.1:9"]}), "permit-checker"
    )
    try:
        code = await asyncio.to_thread(proc.wait, 90)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = _output(proc)
    assert code == 1, out[-3000:]
    assert (
        "ptsp-gate run: permit-checker: the Kafka consumer stopped (see the log above)"
        in out.splitlines()
    )
