"""Helpers for integration tests: run services in-process, produce events, read topics."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from ptsp_gate.config import Settings
from ptsp_gate.policy import load_policy_book
from ptsp_gate.services.runtime import Service
from ptsp_gate.services.specs import spec_for


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
    bootstrap: list[str], topic: str, expected: int, timeout: float = 30.0, settle: float = 0.5
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of the topic from the beginning: waits for `expected`, then a little longer
    so that duplicates beyond it would be seen too."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    out: list[ConsumerRecord[bytes, bytes]] = []
    loop = asyncio.get_running_loop()
    try:
        deadline = loop.time() + timeout
        settle_until: float | None = None
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out.extend(records)
            if len(out) >= expected:
                settle_until = settle_until or loop.time() + settle
                if loop.time() >= settle_until:
                    break
    finally:
        await consumer.stop()
    return out


def decisions(records: list[ConsumerRecord[bytes, bytes]]) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records]


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for k, v in record.headers:
        if k == name:
            return v.decode("utf-8", "replace")
    return None
