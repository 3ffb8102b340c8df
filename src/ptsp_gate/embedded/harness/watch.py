"""What the running system did: the records on a topic, the decisions it published, the enrolment
records it applied."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import UnknownTopicOrPartitionError

from ptsp_gate.adapters.postgres import connect

__all__ = ["collect_decisions", "read_topic", "wait_for_enrolments"]

Record: TypeAlias = ConsumerRecord[bytes, bytes]


def _client(servers: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(servers, Mapping):
        return dict(servers)
    return {"bootstrap_servers": list(servers)}


async def read_topic(
    servers: Sequence[str] | Mapping[str, Any],
    topic: str,
    expected: int,
    # Not a cancellation: once it is over, what was read so far is the answer.
    timeout: float = 30.0,  # noqa: ASYNC109
    settle: float = 0.5,
    *,
    distinct: Callable[[Record], Any] | None = None,
) -> list[Record]:
    """Every record of the topic from the beginning: waits for ``expected`` records (or, with
    ``distinct``, for ``expected`` different values of it other than None: republished copies
    must not count), then ``settle`` seconds longer so that duplicates beyond them would be seen
    too; after ``timeout`` seconds returns what there is.

    ``servers``: the bootstrap servers, or all of an aiokafka client's arguments (security
    settings included, as ``adapters.kafka.client_args`` makes them)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    consumer = await _consumer(servers, topic, deadline)
    out: list[Record] = []
    seen: set[Any] = set()
    try:
        settle_until: float | None = None
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out.extend(records)
                if distinct is not None:
                    seen.update(distinct(r) for r in records)
            seen.discard(None)
            if (len(seen) if distinct is not None else len(out)) >= expected:
                settle_until = settle_until or loop.time() + settle
                if loop.time() >= settle_until:
                    break
    finally:
        await consumer.stop()
    return out


async def _consumer(
    servers: Sequence[str] | Mapping[str, Any], topic: str, deadline: float
) -> AIOKafkaConsumer:
    """A consumer of the whole topic, started. A topic created a moment ago may not be in the
    metadata of the broker asked yet (a cluster of several brokers): asked again until it is."""
    loop = asyncio.get_running_loop()
    while True:
        consumer = AIOKafkaConsumer(
            topic,
            **_client(servers),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        try:
            await consumer.start()
        except UnknownTopicOrPartitionError:
            await consumer.stop()
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(0.2)
            continue
        return consumer


async def collect_decisions(
    servers: Sequence[str] | Mapping[str, Any],
    topic: str,
    wanted: Collection[str],
    *,
    since: datetime,
    accept: Callable[[dict[str, Any]], bool] = lambda _d: True,
    timeout_s: float = 30.0,
) -> dict[str, dict[str, Any]]:
    """The decisions on ``topic`` made at or after ``since`` that ``accept`` takes, by
    application id (the last one of each); returns once there is one for every application in
    ``wanted``, or after ``timeout_s`` with those there are."""

    def taken(record: Record) -> dict[str, Any] | None:
        decision: dict[str, Any] = json.loads(record.value)
        if datetime.fromisoformat(decision["decided_at"]) >= since and accept(decision):
            return decision
        return None

    def awaited(record: Record) -> str | None:
        decision = taken(record)
        if decision is None or decision["application_id"] not in wanted:
            return None
        return str(decision["application_id"])

    records = await read_topic(servers, topic, len(wanted), timeout_s, settle=0.0, distinct=awaited)
    found: dict[str, dict[str, Any]] = {}
    for record in records:
        decision = taken(record)
        if decision is not None:
            found[decision["application_id"]] = decision
    return found


async def wait_for_enrolments(
    dsn: str, nibs: Collection[str], version: int, timeout_s: float
) -> bool:
    """Until the projection holds every NIB at ``version`` or newer; False after ``timeout_s``."""
    conn = await connect(dsn)
    loop = asyncio.get_running_loop()
    try:
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            n = await conn.fetchval(
                "SELECT count(*) FROM employer_enrolment WHERE nib = ANY($1) AND version >= $2",
                list(nibs),
                version,
            )
            if n == len(nibs):
                return True
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    return False
