"""The workload: employers with a fixed mix of enrolment states, applications spread over them, and
producing those to the broker."""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ptsp_gate import demo
from ptsp_gate.contract.events import EnrolmentState
from ptsp_gate.stores import enrolments

from .steps import BenchError

# Mock only: the mock broker keeps about 5 MiB per partition, so uncompressed, 100,000
# application events on six partitions would lose their older half before anyone reads them;
# gzip shrinks them ~10x. Apache Kafka keeps them all, and gets them as the service's own producer
# sends records, uncompressed (gzip would add decompression to phases A and B that a real input
# topic need not have).
PRELOAD_COMPRESSION: dict[str, str | None] = {"mock": "gzip", "kafka": None}


def relay_like_producer(bootstrap: list[str], **config: Any) -> AIOKafkaProducer:
    """A producer configured as the service's outbox relay configures its own
    (adapters/kafka.py): every replica acknowledges, idempotent, 5 ms linger, 256 KiB batches."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
        **config,
    )


def _employer_kind(n: int) -> int:
    return n % 20


def enrolment_for(n: int, now: datetime) -> dict[str, Any] | None:
    """The employer's enrolment record (None: no record). 60 % of employers are in order, 30 %
    have a blocking problem, 10 % are pending (stale record or none)."""
    kind = _employer_kind(n)
    if kind < 12:
        return demo.enrolment(n, now=now)
    variants: dict[int, dict[str, Any]] = {
        12: {"status": "INACTIVE"},
        13: {"arrears": 3},
        14: {"sanction": True},
        15: {"pds": ("WAGES",)},
        16: {"status": "NOT_REGISTERED", "programs": (), "enrolled": 0},
        17: {"programs": ("JKK", "JKM", "JHT"), "enrolled": 12},
        18: {"age_days": 200},
    }
    if kind in variants:
        return demo.enrolment(n, now=now, **variants[kind])
    return None


def application_for(n: int, seq: int, phase: str, now: datetime) -> dict[str, Any]:
    kind = _employer_kind(n)
    scale, workers = ("KECIL", 20) if kind == 17 else ("MIKRO", 3)
    action = "RENEWAL" if seq % 10 == 9 else "NEW"
    data = demo.application(n, scale=scale, workers=workers, action=action, now=now)
    data["application_id"] = application_id(phase, seq)
    return data


def application_id(phase: str, seq: int) -> str:
    return f"BENCH-{phase}{seq:08d}"


def phase_of(app_id: str) -> str:
    return app_id[6:7]


def ce_time_ms(headers: list[tuple[str, bytes]]) -> int:
    for k, v in headers:
        if k == "ce_time":
            return int(datetime.fromisoformat(v.decode()).timestamp() * 1000)
    raise ValueError("event without ce_time")


Event = tuple[bytes, list[tuple[str, bytes]], bytes, str, int]  # key, headers, value, id, ce_ms


def make_event(
    rng: random.Random, employers: int, seq: int, phase: str, traced: bool = False
) -> Event:
    """One application event exactly as demo.application_record builds it; ce_time = now. A
    traced one also carries a W3C traceparent of its own trace, as an instrumented PTSP sends."""
    n = rng.randint(1, employers)
    data = application_for(n, seq, phase, datetime.now(UTC))
    key, headers, value = demo.application_record(data)
    if traced:
        parent = f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64) | 1:016x}-01"
        headers.append(("traceparent", parent.encode()))
    return key, headers, value, data["application_id"], ce_time_ms(headers)


async def load_enrolments(conn: asyncpg.Connection, employers: int) -> int:
    now = datetime.now(UTC)
    states = []
    for n in range(1, employers + 1):
        record = enrolment_for(n, now)
        if record is not None:
            states.append(EnrolmentState.model_validate_json(json.dumps(record)))
    for i in range(0, len(states), 5000):
        chunk = states[i : i + 5000]
        await enrolments.apply_newer(conn, chunk, "bench", [None] * len(chunk))
    return len(states)


async def commit_end_offsets(bootstrap: list[str], topic: str, group: str, partitions: int) -> None:
    """Commit the topic's current end offsets for `group` (which has no member yet): its consumers
    then start after every record already in the topic."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.commit(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def preload(
    bootstrap: list[str],
    topic: str,
    events: list[Event],
    partitions: int,
    compression: str | None,
) -> tuple[float, float, int]:
    """Produce the events (see PRELOAD_COMPRESSION) and check the broker kept them all (records
    already in the topic may go: nobody reads them again; only the mock broker drops any).
    Returns when production started (time.monotonic()), how long it took and how many partitions
    got events."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        before = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    producer = relay_like_producer(bootstrap, compression_type=compression)
    await producer.start()
    started = time.monotonic()
    try:
        for i in range(0, len(events), 5000):
            futures = [
                await producer.send(topic, value, key=key, headers=headers)
                for key, headers, value, _, _ in events[i : i + 5000]
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    elapsed = time.monotonic() - started
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    kept = sum(max(0, end[tp] - max(begin[tp], before[tp])) for tp in tps)
    if kept != len(events) or sum(end[tp] - before[tp] for tp in tps) != len(events):
        raise BenchError(
            f"the broker kept {kept} of {len(events)} records (the mock broker's retention is "
            "about 5 MiB per partition): use more --partitions or fewer --events"
        )
    return started, elapsed, sum(1 for tp in tps if end[tp] > before[tp])
