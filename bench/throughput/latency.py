"""The decisions topic as the bench sees it: every decision matched to the event it answers, with
its latency, per phase; and the floor the broker alone imposes."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from ptsp_gate.embedded.harness import Process

from .load import ce_time_ms, phase_of
from .steps import STALL_TIMEOUT_S, BenchError, check_alive, tails


@dataclass
class PhaseStats:
    received: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    samples: list[tuple[int, int]] = field(default_factory=list)  # (ce_time, latency), ms

    @property
    def latencies_ms(self) -> list[int]:
        return [latency for _, latency in self.samples]

    def drift(self) -> tuple[float, float] | None:
        """Median latency of the first and of the last third of the events, in send order: a
        service that keeps up has both about equal, one falling behind a growing second."""
        if len(self.samples) < 30:
            return None
        ordered = [latency for _, latency in sorted(self.samples)]
        third = len(ordered) // 3
        return _median(ordered[:third]), _median(ordered[-third:])


def _median(values: list[int]) -> float:
    ordered = sorted(values)
    return float(ordered[len(ordered) // 2])


class _TopicReader:
    """Every partition of one topic, read without a group by a background task from where
    :meth:`_position` puts it; each batch goes to :meth:`_received`."""

    _max_records: int | None = None  # per batch; None: aiokafka's default

    def __init__(self, bootstrap: list[str], topic: str, partitions: int, **consumer: Any) -> None:
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **consumer
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.assign(self._tps)
        await self._position()
        self._task = asyncio.create_task(self._run(), name=type(self).__name__)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._consumer.stop()

    async def _position(self) -> None:
        raise NotImplementedError

    def _received(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=self._max_records)
            self._received([r for records in batch.values() for r in records])


class DeliveryFloor(_TopicReader):
    """A plain aiokafka consumer (default fetch settings, like the service's) on the input topic
    during a phase C run: receive time − ce_time is the latency the broker alone adds. The mock
    broker answers a Fetch that finds no data only after fetch_max_wait_ms (500 ms by default)
    even when data arrives meanwhile, so on it this floor is about 250 ms median, 500 ms at worst;
    Apache Kafka answers as soon as data arrives."""

    def __init__(self, bootstrap: list[str], topic: str, partitions: int) -> None:
        super().__init__(bootstrap, topic, partitions)
        self.latencies_ms: list[int] = []

    async def _position(self) -> None:
        await self._consumer.seek_to_end(*self._tps)
        for tp in self._tps:  # resolve the positions now, before phase C's first event
            await self._consumer.position(tp)

    def _received(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        now_ms = int(time.time() * 1000)
        for r in records:
            self.latencies_ms.append(now_ms - ce_time_ms(list(r.headers)))


class DecisionCollector(_TopicReader):
    """Reads the decisions topic from its beginning in a background task; matches each decision
    to the event it answers by ce_subject (= application_id)."""

    _max_records = 10_000

    def __init__(self, bootstrap: list[str], topic: str, partitions: int) -> None:
        # "none": if the mock broker's retention ever dropped decisions before we read them, fail
        # loudly instead of silently skipping to the oldest record still there. (Apache Kafka
        # drops nothing this young; there the setting is merely never used.)
        super().__init__(bootstrap, topic, partitions, auto_offset_reset="none")
        self.sent_ms: dict[str, int] = {}  # application_id -> ce_time (ms)
        self.seen: set[str] = set()
        self.phases: dict[str, PhaseStats] = {}
        self.duplicates = 0
        self.unmatched = 0

    def expect(self, app_id: str, ce_ms: int) -> None:
        self.sent_ms[app_id] = ce_ms

    def phase(self, name: str) -> PhaseStats:
        return self.phases.setdefault(name, PhaseStats())

    async def _position(self) -> None:
        await self._consumer.seek_to_beginning(*self._tps)

    def check(self) -> None:
        """Raise what stopped the collector, if it stopped."""
        if self._task is not None and self._task.done():
            exc = self._task.exception()
            if isinstance(exc, OffsetOutOfRangeError):
                raise BenchError(
                    "the bench's consumer fell behind the broker's retention on the decisions "
                    "topic (the mock broker keeps about 5 MiB per partition); use more "
                    "--partitions"
                ) from exc
            raise BenchError(f"decision collector stopped: {exc!r}")

    def _received(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        for r in records:
            self._one(r.headers, r.timestamp)

    def _one(self, headers: Any, timestamp_ms: int) -> None:
        app_id = next((v.decode() for k, v in headers if k == "ce_subject"), None)
        if app_id is None or app_id not in self.sent_ms:
            self.unmatched += 1
            return
        if app_id in self.seen:
            self.duplicates += 1
            return
        self.seen.add(app_id)
        stats = self.phase(phase_of(app_id))
        stats.received += 1
        if stats.first_ms is None or timestamp_ms < stats.first_ms:
            stats.first_ms = timestamp_ms
        if stats.last_ms is None or timestamp_ms > stats.last_ms:
            stats.last_ms = timestamp_ms
        sent = self.sent_ms[app_id]
        stats.samples.append((sent, timestamp_ms - sent))


async def wait_for_decisions(
    collector: DecisionCollector,
    phase: str,
    expected: int,
    services: Sequence[Process],
    *,
    timeout: float,
    on_first: Callable[[], Any] | None = None,
    check: Callable[[], None] | None = None,
) -> None:
    """Until `expected` decisions of the phase are in; fails on a stall, a timeout or any service
    instance exiting. `on_first` runs (awaited) as soon as the first decision is seen; `check`
    (raising what went wrong) on every round."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    stats = collector.phase(phase)
    last_count, last_change = -1, loop.time()
    first_done = on_first is None
    while stats.received < expected:
        collector.check()
        check_alive(services)
        if check is not None:
            check()
        now = loop.time()
        if stats.received != last_count:
            last_count, last_change = stats.received, now
        if now - last_change > STALL_TIMEOUT_S:
            raise BenchError(
                f"phase {phase}: no new decision for {STALL_TIMEOUT_S:.0f} s "
                f"({stats.received} of {expected}); service log:\n{tails(services)}"
            )
        if now > deadline:
            raise BenchError(
                f"phase {phase}: {stats.received} of {expected} decisions after {timeout:.0f} s"
            )
        if not first_done and stats.received > 0:
            first_done = True
            assert on_first is not None
            await on_first()
        await asyncio.sleep(0.02)


def percentiles(values: list[int]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def rank(p: float) -> float:
        return float(ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))])

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "max": float(ordered[-1])}
