"""The console commands against a real PostgreSQL (and, for `dev`, the whole system)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ptsp_gate import demo
from ptsp_gate.adapters import migrations
from ptsp_gate.adapters.postgres import connect
from ptsp_gate.config import Settings
from ptsp_gate.embedded import harness
from ptsp_gate.stores import compliance

from ..cli_helpers import console
from .conftest import eventually, kafka_engine
from .support import decide_scenarios

pytestmark = pytest.mark.integration


def _cli(dsn: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return console(*argv, env={**os.environ, "DATABASE_URL": dsn})


async def test_migrate_is_idempotent_and_safe_concurrently(server_dsn) -> None:
    dsn = await harness.create_database(server_dsn, "ptsp_gate_mig")
    results = await asyncio.gather(*(asyncio.to_thread(_cli, dsn, "migrate") for _ in range(4)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    outputs = sorted(r.stdout.strip() for r in results)
    assert outputs.count("database schema is current") == 3
    assert outputs[0].startswith("applied: 0001_initial.sql")
    conn = await connect(dsn)
    try:
        assert await migrations.pending(conn) == []
        assert await conn.fetchval("SELECT count(*) FROM schema_migration") == len(
            migrations.available()
        )
    finally:
        await conn.close()


async def test_officer_commands_on_real_decisions(settings, producer, bootstrap, db, db_dsn):
    scenarios = demo.scenarios(datetime.now(UTC))
    await decide_scenarios(settings, producer, bootstrap, db, scenarios)
    blocked = {s.application["employer"]["nib"] for s in scenarios if s.expect_outcome == "BLOCKED"}

    out = await asyncio.to_thread(_cli, db_dsn, "flagged", "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert {r["nib"] for r in rows} == blocked
    assert all(r["blocked_applications"] == 1 and r["region_code"] == "7314" for r in rows)

    out = await asyncio.to_thread(_cli, db_dsn, "flagged", "--reason", "ARREARS", "--format", "csv")
    parsed = list(csv.DictReader(io.StringIO(out.stdout)))
    assert {r["nib"] for r in parsed} == {demo.nib(6), demo.nib(12)}

    out = await asyncio.to_thread(_cli, db_dsn, "flagged", "--region", "1111")
    assert out.stdout == "No flagged employers.\n"

    out = await asyncio.to_thread(_cli, db_dsn, "flagged")
    assert out.returncode == 0
    assert f"{len(blocked)} flagged employer(s)" in out.stdout

    out = await asyncio.to_thread(_cli, db_dsn, "employer", demo.nib(6), "--format", "json")
    report = json.loads(out.stdout)
    assert report["enrolment"]["arrears_months"] == 3
    assert report["enrolment"]["npwp"].startswith("*")
    assert [d["outcome"] for d in report["decisions"]] == ["BLOCKED"]

    out = await asyncio.to_thread(_cli, db_dsn, "employer", demo.nib(6))
    assert "Decisions (1, newest first)" in out.stdout

    out = await asyncio.to_thread(_cli, db_dsn, "employer", "9999999999999")
    assert out.returncode == 3
    assert "no record" in out.stdout


async def test_flagged_csv_writes_formulas_as_text(db, db_dsn) -> None:
    # Decisions as stored; the region and the codes are what a spreadsheet would run.
    hostile = ['=HYPERLINK("http://x")', "+1+1", "@SUM(A1)", "-2+3", "\t=1"]
    regions = [*hostile, "7314"]
    for n, region in enumerate(regions, start=1):
        await db.execute(
            """
            INSERT INTO compliance_decision (decision_id, event_id, application_id, nib, action,
                region_code, outcome, reason_codes, reasons, policy_version, decided_at)
            VALUES (gen_random_uuid(), $1, $1, $2, 'NEW', $3, 'BLOCKED', $4, '[]'::jsonb,
                'national-2026.1', now())
            """,
            f"evt-{n}",
            demo.nib(n),
            region,
            [region if region != "7314" else "ARREARS"],
        )
    await compliance.rebuild(db)  # history written by hand, as `projection rebuild` reads it
    out = await asyncio.to_thread(_cli, db_dsn, "flagged", "--format", "csv")
    assert out.returncode == 0, out.stderr
    rows = {r["nib"]: r for r in csv.DictReader(io.StringIO(out.stdout))}
    for n, region in enumerate(hostile, start=1):
        assert rows[demo.nib(n)]["region_code"] == "'" + region
        assert rows[demo.nib(n)]["reason_codes"] == "'" + region
        assert rows[demo.nib(n)]["blocked_applications"] == "1"
    ordinary = rows[demo.nib(len(regions))]
    assert (ordinary["region_code"], ordinary["reason_codes"]) == ("7314", "ARREARS")


async def test_officer_command_on_unmigrated_database_is_one_line(server_dsn) -> None:
    bare = await harness.create_database(server_dsn, "ptsp_gate_bare")
    out = await asyncio.to_thread(_cli, bare, "flagged")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "ptsp-gate flagged: database schema is behind: run `ptsp-gate migrate`"
    ]


@pytest.mark.skipif(
    bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")),
    reason="dev uses the embedded broker in this test",
)
def test_dev_shows_every_outcome(tmp_path, db_dsn) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS",)}
    env.update({"PTSP_GATE_DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": db_dsn})
    proc = console(
        "dev",
        "--exit-after-demo",
        "--permit-checker-port",
        "19101",
        "--enrolment-sync-port",
        "19102",
        "--officer-console-port",
        "19103",
        env=env,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for outcome in ("CLEARED", "BLOCKED", "PENDING", "REJECTED"):
        assert outcome in proc.stdout
    assert "NO (expected" not in proc.stdout
    assert "dead-lettered" in proc.stdout
    assert "went from BLOCKED to CLEARED on its own" in proc.stdout
    assert "http://localhost:19103/" in proc.stdout  # the console ran, and was ready


def _broker(*args: str, **popen: Any) -> subprocess.Popen[str]:
    """`ptsp-gate broker ARGS` in the background, its first stdout line to be read."""
    options: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen(
        [sys.executable, "-m", "ptsp_gate.cli.main", "broker", *args], **(options | popen)
    )


async def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    return await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout)


needs_apache_kafka = pytest.mark.skipif(
    kafka_engine() != "kafka",
    reason="starts Apache Kafka nodes: the session runs on another engine",
)


async def test_broker_command_prints_its_address_and_stops_cleanly(tmp_path) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    bootstrap_file = tmp_path / "bootstrap"
    proc = _broker("--brokers", "2", "--partitions", "2", "--bootstrap-file", str(bootstrap_file))
    try:
        first = await _first_line(proc, 20)
        servers = first.strip().split(",")
        assert len(servers) == 2
        assert bootstrap_file.read_text().strip() == first.strip()
        producer = AIOKafkaProducer(bootstrap_servers=servers)
        await producer.start()
        await producer.send_and_wait("ptsp.permit-applications.v1", b"hello", key=b"k")
        await producer.stop()
        consumer = AIOKafkaConsumer(
            "ptsp.permit-applications.v1", bootstrap_servers=servers, auto_offset_reset="earliest"
        )
        await consumer.start()
        record = await asyncio.wait_for(consumer.getone(), 10)
        await consumer.stop()
        assert record.value == b"hello"
    finally:
        proc.terminate()
        code = await asyncio.to_thread(proc.wait, 20)
    assert code == 0


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@needs_apache_kafka
async def test_broker_command_runs_apache_kafka_and_stops_every_node(tmp_path) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    bootstrap_file = tmp_path / "bootstrap"
    proc = _broker(
        "--engine", "kafka", "--brokers", "2", "--partitions", "2",
        "--bootstrap-file", str(bootstrap_file),
    )  # fmt: skip
    try:
        first = await _first_line(proc, 120)
        servers = first.strip().split(",")
        assert len(servers) == 2
        assert all(s.startswith("127.0.0.1:") for s in servers)
        assert bootstrap_file.read_text().strip() == first.strip()
        jvms = _descendants(proc.pid)
        assert len(jvms) == 2
        admin = AIOKafkaAdminClient(bootstrap_servers=servers)
        await admin.start()
        try:
            described = await admin.describe_topics(Settings().all_topics())
            configs = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, Settings().topic_enrolment)]
            )
        finally:
            await admin.close()
        assert {t["topic"]: len(t["partitions"]) for t in described} == dict.fromkeys(
            Settings().all_topics(), 2
        )
        assert all(len(p["replicas"]) == 2 for t in described for p in t["partitions"])
        entries = {c[0]: c[1] for c in configs[0].resources[0][4]}
        assert entries["cleanup.policy"] == "compact"
    finally:
        proc.terminate()
        code = await asyncio.to_thread(proc.wait, 60)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert code == 0, stderr[-2000:]
    assert not any(_alive(pid) for pid in jvms)
    assert not bootstrap_file.exists()
    data_dir = re.search(r"node\(s\) in (\S+),", stderr)
    assert data_dir is not None, stderr
    assert not Path(data_dir.group(1)).exists()


@needs_apache_kafka
async def test_apache_kafka_nodes_die_with_a_killed_broker_command(tmp_path) -> None:
    # Its data directory is left behind (nothing runs to remove it): inside tmp_path.
    proc = _broker(
        "--engine",
        "kafka",
        "--brokers",
        "2",
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        await _first_line(proc, 120)
        jvms = _descendants(proc.pid)
        assert len(jvms) == 2
    finally:
        proc.kill()
        await asyncio.to_thread(proc.wait, 10)

    async def all_gone() -> bool:
        return not any(_alive(pid) for pid in jvms)

    await eventually(all_gone, timeout=10)
