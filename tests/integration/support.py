"""Helpers for integration tests: run services in-process, produce events, read topics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from ptsp_gate import demo
from ptsp_gate.config import Settings
from ptsp_gate.policy import load_policy_book
from ptsp_gate.runtime.registry import spec_for
from ptsp_gate.runtime.service import Service


@contextlib.asynccontextmanager
async def services(settings: Settings, *names: str) -> AsyncIterator[dict[str, Service]]:
    running: dict[str, Service] = {}
    try:
        for name in names or ("enrolment-sync", "permit-checker"):
            spec = spec_for(name, settings, load_policy_book(settings.policy_dir))
            svc = Service(spec, settings)
            await svc.start()
            running[name] = svc
        yield running
    finally:
        for svc in reversed(list(running.values())):
            await svc.stop()


async def send(
    producer: AIOKafkaProducer, topic: str, records: list[tuple[bytes | None, Any, bytes | None]]
) -> None:
    futures = [
        await producer.send(topic, value, key=key, headers=headers)
        for key, headers, value in records
    ]
    await asyncio.gather(*futures)


async def read_topic(
    bootstrap: list[str],
    topic: str,
    expected: int,
    timeout: float = 30.0,
    settle: float = 0.5,
    *,
    distinct: Callable[[ConsumerRecord[bytes, bytes]], Any] | None = None,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of the topic from the beginning: waits for `expected` records (or, with
    `distinct`, for `expected` different values of it: republished copies must not count), then a
    little longer so that duplicates beyond it would be seen too."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    out: list[ConsumerRecord[bytes, bytes]] = []
    seen: set[Any] = set()
    loop = asyncio.get_running_loop()
    try:
        deadline = loop.time() + timeout
        settle_until: float | None = None
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out.extend(records)
                if distinct is not None:
                    seen.update(distinct(r) for r in records)
            if (len(seen) if distinct is not None else len(out)) >= expected:
                settle_until = settle_until or loop.time() + settle
                if loop.time() >= settle_until:
                    break
    finally:
        await consumer.stop()
    return out


def application_id(record: ConsumerRecord[bytes, bytes]) -> str:
    """The application a decision record answers."""
    return str(json.loads(record.value)["application_id"])


def decisions(records: list[ConsumerRecord[bytes, bytes]]) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records]


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for k, v in record.headers:
        if k == name:
            return v.decode("utf-8", "replace")
    return None


def events(n: int, tag: str) -> list[tuple[bytes, list[tuple[str, bytes]], bytes]]:
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        app = demo.application(i % 50, workers=0, now=now)
        app["application_id"] = f"APP-{tag}-{i:06d}"
        out.append(demo.application_record(app))
    return out


def assert_none_lost(records, n: int) -> None:
    """At-least-once on the wire: a relay that dies between publishing and recording it
    republishes. Any copy must be byte-identical, so consumers dedupe by decision_id."""
    apps = {d["application_id"] for d in decisions(records)}
    assert len(apps) == n, f"{n - len(apps)} decisions lost"
    by_id: dict[str, set[bytes]] = {}
    for r in records:
        by_id.setdefault(decisions([r])[0]["decision_id"], set()).add(r.value)
    assert len(by_id) == n
    assert all(len(values) == 1 for values in by_id.values()), "a redelivery differs"


def assert_exactly_once(records, n: int) -> None:
    ids = Counter(d["decision_id"] for d in decisions(records))
    apps = {d["application_id"] for d in decisions(records)}
    assert len(apps) == n, f"{n - len(apps)} decisions lost"
    duplicates = {k: v for k, v in ids.items() if v > 1}
    assert not duplicates, f"{len(duplicates)} decisions published more than once"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_process(
    settings,
    name: str,
    port: int | None = None,
    *extra: str,
    env_extra: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(settings.kafka_bootstrap_servers),
        "DATABASE_URL": settings.dsn(),
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
            str(port or free_port()),
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


def output_of(proc: subprocess.Popen[bytes]) -> str:
    """Everything the process has written so far (stdout and stderr)."""
    output = proc.output_file  # type: ignore[attr-defined]
    output.seek(0)
    return output.read().decode(errors="replace")


async def decide_scenarios(
    settings: Settings,
    producer: AIOKafkaProducer,
    bootstrap: list[str],
    db: Any,
    scenarios: list[demo.Scenario],
) -> None:
    """The demo scenarios through both services: their enrolments applied first, then their
    applications sent, until each application's decision is on the decisions topic."""
    async with services(settings):
        enrolments = [s.enrolment for s in scenarios if s.enrolment]
        records = [demo.enrolment_record(e) for e in enrolments]
        await send(producer, settings.topic_enrolment, records)
        while await db.fetchval("SELECT count(*) FROM employer_enrolment") < len(enrolments):
            await asyncio.sleep(0.1)
        records = [demo.application_record(s.application, s.ce_type) for s in scenarios]
        await send(producer, settings.topic_applications, records)
        await read_topic(bootstrap, settings.topic_decisions, len(scenarios))
