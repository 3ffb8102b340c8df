"""Offsets of handled batches, committed to Kafka beside the work rather than in its path.

A commit goes to the group's coordinator, one broker. When that broker hangs (paused, cut off by
the network), a commit waits for the client's request timeout, tens of seconds, before the client
looks for the new coordinator; a consumer that awaited each commit would decide nothing for that
long, even though every partition it reads is served by healthy brokers. Work is recorded in
PostgreSQL before its offset is committed and a replay is deduplicated, so a late commit costs
only redelivery: commits run one at a time in a background task, and each one covers everything
handled since the last.

Only offsets of records handed to :meth:`OffsetCommitter.handled` are committed, never the
consumer's position: the consumer may already hold the next batch, not yet handled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from aiokafka import TopicPartition

from ptsp_gate.observability.logging import get_logger

log = get_logger(__name__)


class _Located(Protocol):
    topic: str
    partition: int
    offset: int


class OffsetCommitter:
    def __init__(self, consumer: Callable[[], Any], service: str) -> None:
        self._consumer = consumer  # the subscriber's consumer exists only once it has started
        self._service = service
        self._pending: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None

    def handled(self, records: Iterable[_Located]) -> None:
        """Records whose work is durable: their offsets will be committed."""
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            self._pending[tp] = max(self._pending.get(tp, 0), record.offset + 1)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(
                self._commit_pending(), name=f"{self._service}-commits"
            )

    async def flush(self, timeout_s: float) -> None:
        """Wait, at most ``timeout_s``, for every handled offset to be committed or given up."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._task is not None and not self._task.done():
                    await asyncio.shield(self._task)

    async def _commit_pending(self) -> None:
        while self._pending:
            offsets, self._pending = self._pending, {}
            consumer = self._consumer()
            if consumer is None:
                return
            # Partitions taken away by a rebalance are another member's to commit now.
            assigned = consumer.assignment()
            offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
            if not offsets:
                continue
            try:
                await consumer.commit(offsets)
            except Exception as exc:  # not retriable (a rebalance, say): a replay dedupes
                log.warning(
                    "offset commit failed; records since the last commit may be redelivered",
                    service=self._service,
                    error=f"{type(exc).__name__}: {exc}"[:300],
                )
