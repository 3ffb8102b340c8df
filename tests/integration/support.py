"""Helpers for integration tests: run services in-process or as processes, produce events, read
topics. Reading topics and starting processes is the harness's (`ptsp_gate.embedded.harness`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer, ConsumerRecord

from ptsp_gate import demo
from ptsp_gate.config import Settings
from ptsp_gate.embedded import harness
from ptsp_gate.embedded.harness import free_port, read_topic
from ptsp_gate.policy import load_policy_book
from ptsp_gate.runtime.registry import spec_for
from ptsp_gate.runtime.service import Service

__all__ = [
    "application_id",
    "assert_exactly_once",
    "assert_none_lost",
    "decisions",
    "events",
    "free_port",
    "header",
    "query_value",
    "read_topic",
    "send",
    "service_process",
    "services",
]


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


def service_process(
    settings: Settings,
    name: str,
    port: int | None = None,
    *options: str,
    env_extra: dict[str, str] | None = None,
) -> harness.ServiceProcess:
    """`ptsp-gate run NAME` on `settings`, in batches of at most 200 records."""
    env = {
        **harness.settings_env(settings),
        "PTSP_GATE_BATCH_MAX_RECORDS": "200",
        **(env_extra or {}),
    }
    return harness.start_service(name, env, port=port, options=options)


async def query_value(dsn: str, sql: str) -> Any:
    """The one value `sql` returns, on a connection of its own."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


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
