"""The consumer loop's discipline, the same for every service: a batch is handled whole or
rewound and retried; a batch that keeps failing while the infrastructure answers is taken apart,
and the record that fails alone is dead-lettered so the partition moves on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from faststream.kafka.annotations import KafkaMessage

from ptsp_gate.observability.logging import get_logger, mask_text
from ptsp_gate.observability.metrics import Metrics
from ptsp_gate.runtime.errors import TransientFailure, is_transient
from ptsp_gate.runtime.intake import RawRecord
from ptsp_gate.runtime.offset_commits import OffsetCommitter
from ptsp_gate.runtime.progress import PartitionProgress

log = get_logger(__name__)

# A batch that fails this many times in a row, from the same offsets, with an error that is not
# transient, while PostgreSQL and Kafka answer, is taken apart: the cause follows a record.
ISOLATE_AFTER_FAILURES = 2
# Attempts for one record taken out of such a batch before it is dead-lettered.
ATTEMPTS_ALONE = 2


class RecordHandler(Protocol):
    """What a service does with its records: a batch in one go, and a record that cannot be
    handled at all set aside as a dead letter."""

    async def handle_batch(self, records: Sequence[RawRecord]) -> None: ...

    async def dead_letter(self, record: RawRecord, reason: str) -> None: ...


class Backoff:
    """Exponential delay between retries of the same batch, reset by a success."""

    def __init__(self, first_s: float = 0.1, max_s: float = 5.0) -> None:
        self._first = first_s
        self._max = max_s
        self._next = first_s

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self._max)
        return delay

    def reset(self) -> None:
        self._next = self._first


@dataclass(eq=False)
class BatchConsumer:
    """Handles each batch FastStream delivers, and decides what happens when that fails."""

    service: str
    topic: str
    metrics: Metrics
    commits: OffsetCommitter
    infrastructure_healthy: Callable[[], Awaitable[bool]]
    backoff: Backoff
    graceful_timeout_s: float
    handler: RecordHandler | None = None  # set once the service has its pool
    progress: PartitionProgress = field(default_factory=lambda: PartitionProgress(now=0.0))
    stopping: bool = False

    async def on_batch(self, records: Any, msg: KafkaMessage) -> None:
        if not records:
            return
        self.metrics.records_received.labels(self.topic).inc(len(records))
        start = batch_start(records)
        try:
            await self._handle(records, start)
        except Exception as exc:  # nothing may be skipped: rewind and retry
            delay = self.backoff.next()
            self.metrics.retries.labels(self.service).inc()
            log.warning(
                "batch not committed; will retry",
                service=self.service,
                error=error_text(exc),
                records=len(records),
                first_offset=records[0].offset,
                partition=records[0].partition,
                retry_in_s=delay,
                exc_info=not is_transient(exc),
            )
            await msg.nack()
            await asyncio.sleep(delay)
            return
        self.progress.handled(start, asyncio.get_running_loop().time())
        self.backoff.reset()
        self.commits.handled(records)
        if self.stopping:  # the drain's last batch: its commit must land before the consumer goes
            await self.commits.flush(self.graceful_timeout_s)

    async def _handle(self, records: Sequence[RawRecord], start: dict[int, int]) -> None:
        assert self.handler is not None
        self.progress.begin(start)
        try:
            await self.handler.handle_batch(records)
            return
        except TransientFailure:
            self.progress.rewound(start)
            raise
        except Exception as exc:
            if is_transient(exc):
                self.progress.rewound(start)
                # Named as such in the retry's log line, as handlers once wrapped it themselves.
                raise TransientFailure(f"{type(exc).__name__}: {exc}") from exc
            failures = self.progress.failed(start)
            if failures < ISOLATE_AFTER_FAILURES or not await self.infrastructure_healthy():
                raise
        log.error(
            "batch keeps failing while PostgreSQL and Kafka answer; handling its records alone",
            service=self.service,
            records=len(records),
            first_offset=records[0].offset,
            partition=records[0].partition,
        )
        await self._isolate(records)

    async def _isolate(self, records: Sequence[RawRecord]) -> None:
        """Each record alone; one that still fails while the infrastructure is healthy is
        dead-lettered as PROCESSING_FAILED, so the records behind it flow. A transient error or
        an unhealthy infrastructure raises instead: the whole batch is retried, and what went
        through here is deduplicated then."""
        assert self.handler is not None
        for record in records:
            for attempt in range(1, ATTEMPTS_ALONE + 1):
                try:
                    await self.handler.handle_batch([record])
                    break
                except Exception as exc:
                    if is_transient(exc) or not await self.infrastructure_healthy():
                        raise
                    if attempt == ATTEMPTS_ALONE:
                        await self.handler.dead_letter(record, error_text(exc))


def batch_start(records: Sequence[RawRecord]) -> dict[int, int]:
    """Where a batch starts, per partition: a rewound batch starts there again."""
    first: dict[int, int] = {}
    for record in records:
        first.setdefault(record.partition, record.offset)
    return first


def error_text(exc: BaseException) -> str:
    """An error for a log line or a dead letter: its type and text, identifiers masked, bounded."""
    return mask_text(f"{type(exc).__name__}: {exc}")[:500]
