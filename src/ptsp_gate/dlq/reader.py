"""Reading dead-letter topics without a consumer group: partitions are assigned, read from their
first offset up to the high watermark captured when reading starts, and nothing is committed, so
reading never moves any group's offsets and always ends.

Every wait is bounded by `timeout_s`: connecting, metadata, and any stretch without progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ptsp_gate.adapters import kafka
from ptsp_gate.config import Settings

T = TypeVar("T")

_POLL_MS = 200


class KafkaUnavailable(RuntimeError):
    """The cluster could not be reached or stopped answering; said in one line."""


class NoSuchRecord(LookupError):
    """An address that names no record (offset past the end, removed by retention, no partition)."""


async def bounded(what: str, awaitable: Awaitable[T], timeout_s: float) -> T:
    try:
        return await asyncio.wait_for(awaitable, timeout_s)
    except TimeoutError:
        raise KafkaUnavailable(f"Kafka did not answer within {timeout_s:g} s ({what})") from None
    except KafkaUnavailable:
        raise
    except Exception as exc:  # aiokafka's errors, OSError, SSL errors: one line, not a traceback
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise KafkaUnavailable(f"{what}: {detail}") from exc


def quiet_client_logs() -> None:
    """aiokafka logs each failed connection attempt at ERROR; a command reports failure itself,
    in one line."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


class DlqReader:
    def __init__(self, settings: Settings, timeout_s: float) -> None:
        self._settings = settings
        self._timeout = timeout_s
        self._consumer: AIOKafkaConsumer | None = None
        # Built once: the security part reads secret files and makes an SSL context.
        self._client_args = kafka.client_args(settings)
        self.partitions: dict[str, int] = {}

    async def __aenter__(self) -> DlqReader:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        self.partitions = await bounded(
            "cannot read the cluster's topics", self._topics(), self._timeout
        )
        consumer = AIOKafkaConsumer(
            **self._client_args,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="none",
            # A fetch in flight holds up the next assignment's offset lookups for this long.
            fetch_max_wait_ms=_POLL_MS // 2,
        )
        try:
            await bounded("cannot connect to Kafka", consumer.start(), self._timeout)
        except KafkaUnavailable:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), self._timeout)
            raise
        self._consumer = consumer

    async def _topics(self) -> dict[str, int]:
        # The admin client asks for every topic: asking for one by name could create it on a
        # broker that auto-creates topics.
        admin = AIOKafkaAdminClient(**self._client_args)
        try:
            await admin.start()
            described = await admin.describe_topics()
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        return {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}

    async def close(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.stop(), self._timeout)
            self._consumer = None

    @property
    def consumer(self) -> AIOKafkaConsumer:
        assert self._consumer is not None, "open() first"
        return self._consumer

    async def _bounds(
        self, tps: list[TopicPartition]
    ) -> tuple[Mapping[TopicPartition, int], Mapping[TopicPartition, int]]:
        # Assigned first: the client then fetches the topics' metadata itself instead of failing
        # the offset lookup and retrying it after a backoff.
        self.consumer.assign(tps)
        start = await bounded(
            "cannot read first offsets", self.consumer.beginning_offsets(tps), self._timeout
        )
        end = await bounded(
            "cannot read end offsets", self.consumer.end_offsets(tps), self._timeout
        )
        return start, end

    async def read_all(self, topics: Iterable[str]) -> AsyncIterator[ConsumerRecord[Any, Any]]:
        """Every record of the topics, from the first offset to the end as it is now."""
        tps = [TopicPartition(topic, p) for topic in topics for p in range(self.partitions[topic])]
        start, end = await self._bounds(tps)
        wanted = {tp: (start[tp], end[tp] - 1) for tp in tps if start[tp] < end[tp]}
        async for record in self._read(wanted):
            yield record

    async def read_at(
        self, topic: str, partition: int, ranges: Iterable[tuple[int, int]]
    ) -> list[ConsumerRecord[Any, Any]]:
        """The records at the given offsets (inclusive ranges), each of which must exist."""
        count = self.partitions[topic]
        if partition >= count:
            raise NoSuchRecord(
                f"{topic} has partitions 0-{count - 1}; there is no partition {partition}"
            )
        tp = TopicPartition(topic, partition)
        start, end = await self._bounds([tp])
        first_kept, after_last = start[tp], end[tp]
        ranges = sorted(set(ranges))
        for first, last in ranges:
            if last >= after_last:
                raise NoSuchRecord(
                    f"offset {last} is beyond the end of {topic}/{partition}"
                    + (
                        f" (its last offset is {after_last - 1})"
                        if after_last
                        else " (it is empty)"
                    )
                )
            if first < first_kept:
                raise NoSuchRecord(
                    f"offset {first} of {topic}/{partition} is no longer kept "
                    f"(retention; its first offset is {first_kept})"
                )
        wanted_offsets = {o for first, last in ranges for o in range(first, last + 1)}
        found: list[ConsumerRecord[Any, Any]] = []
        for first, last in ranges:
            async for record in self._read({tp: (first, last)}):
                if record.offset in wanted_offsets:
                    found.append(record)
        missing = wanted_offsets - {r.offset for r in found}
        if missing:
            raise NoSuchRecord(f"there is no record at {topic}/{partition}/{min(missing)}")
        return found

    async def _read(
        self, wanted: Mapping[TopicPartition, tuple[int, int]]
    ) -> AsyncIterator[ConsumerRecord[Any, Any]]:
        consumer = self.consumer
        if not wanted:
            return
        consumer.assign(list(wanted))
        for tp, (first, _) in wanted.items():
            consumer.seek(tp, first)
        active = dict(wanted)
        loop = asyncio.get_running_loop()
        last_progress = loop.time()
        while active:
            batch = await consumer.getmany(*active, timeout_ms=_POLL_MS)
            for tp, records in batch.items():
                last = active.get(tp, (0, -1))[1]
                for record in records:
                    if record.offset <= last:
                        yield record
            moved = bool(batch)
            for tp in list(active):
                # The position, not the last record: compaction and transaction markers leave
                # offsets with no record to return.
                position = await bounded(
                    "cannot read a position", consumer.position(tp), self._timeout
                )
                if position > active[tp][1]:
                    del active[tp]
                    moved = True
            if moved:
                last_progress = loop.time()
            elif loop.time() - last_progress > self._timeout:
                stuck = ", ".join(f"{tp.topic}/{tp.partition}" for tp in active)
                raise KafkaUnavailable(f"no progress reading {stuck} for {self._timeout:g} s")
