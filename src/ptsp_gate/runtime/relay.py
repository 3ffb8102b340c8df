"""Transactional outbox: rows written in the same transaction as the state they announce, then
published to Kafka by one relay at a time (in id order, so per-key order holds) and deleted.

A broker outage delays publication; it never loses a row. A crash between publishing and deleting
republishes the same bytes; consumers dedupe by the decision's deterministic `decision_id`.

A row the broker refuses for a permanent reason (`PERMANENT_REFUSALS`) is moved to
`outbox_parked` instead of being retried ahead of every row behind it for ever; `ptsp-gate outbox
retry ID` puts it back at the end of the outbox once the cause is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors

from ptsp_gate.adapters.postgres import TRANSIENT_DB_ERRORS, connect
from ptsp_gate.contract.cloudevents import unpack_headers
from ptsp_gate.observability import tracing
from ptsp_gate.observability.logging import get_logger
from ptsp_gate.observability.metrics import Metrics
from ptsp_gate.stores import outbox

log = get_logger(__name__)

# Refusals that no retry can change: the record is too large for the producer or the broker, the
# topic name is invalid, or this client may not write to the topic (fixing the ACL and running
# `outbox retry` is an operator's act, not something waiting achieves).
PERMANENT_REFUSALS: tuple[type[BaseException], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.InvalidTopicError,
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.UnsupportedForMessageFormatError,
)


class OutboxRelay:
    def __init__(
        self,
        *,
        dsn: str,
        producer_factory: Any,
        metrics: Metrics,
        batch_size: int = 2000,
        idle_poll_s: float = 0.5,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._producer_factory = producer_factory
        self._metrics = metrics
        self._batch_size = batch_size
        self._idle_poll_s = idle_poll_s
        self._max_backoff_s = max_backoff_s
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Stop after publishing what is already committed, within the timeout."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, drain_timeout_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await self._discard_producer()

    async def _discard_producer(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._lead()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: back off, reconnect, keep the rows
                error = f"{type(exc).__name__}: {exc}"
                # An idempotent producer whose batch failed can be left with sequence numbers
                # the broker refuses from then on (OutOfOrderSequenceNumber): start a fresh one.
                await self._discard_producer()
                self._metrics.retries.labels("outbox_relay").inc()
                log.warning("outbox relay failed; retrying", error=error, retry_in_s=backoff)
                if self._stopping.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                if self._stopping.is_set():
                    return

    async def _lead(self) -> None:
        conn = await connect(self._dsn)
        try:
            while not await outbox.take_relay_lead(conn):
                if self._stopping.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1.0)
            await conn.add_listener(outbox.NOTIFY_CHANNEL, lambda *_: self._wake.set())
            await self._publish_loop(conn)
        finally:
            with contextlib.suppress(*TRANSIENT_DB_ERRORS, asyncpg.PostgresError):
                await conn.close(timeout=2)

    async def _started_producer(self) -> AIOKafkaProducer:
        producer = self._producer_factory()
        await producer.start()
        return producer

    async def _publish_loop(self, conn: asyncpg.Connection) -> None:
        while True:
            self._wake.clear()
            # Read before fetching: stopping ends the loop only after a fetch that began after the
            # stop was requested comes back empty, so every committed row is published.
            stopping = self._stopping.is_set()
            rows = await outbox.pending(conn, self._batch_size)
            if rows:
                if self._producer is None:
                    self._producer = await self._started_producer()
                await self._publish(conn, self._producer, rows)
                continue
            if stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._idle_poll_s)

    async def _publish(
        self, conn: asyncpg.Connection, producer: AIOKafkaProducer, rows: list[asyncpg.Record]
    ) -> None:
        sent: list[tuple[asyncpg.Record, asyncio.Future[Any]]] = []
        refused: dict[int, str] = {}
        failure: BaseException | None = None
        held: set[str] = set()  # topics whose rows wait for the next round
        for r in rows:
            if r["topic"] in held:
                continue
            try:
                future = await _send(producer, r)
            except PERMANENT_REFUSALS as exc:  # the producer's own size check: this row alone
                refused[r["id"]] = _reason(exc)
            except Exception as exc:  # a topic the client cannot reach: the others go on
                failure = failure or exc
                held.add(r["topic"])
            else:
                sent.append((r, future))
        results = await asyncio.gather(*(f for _, f in sent), return_exceptions=True)
        published: list[asyncpg.Record] = []
        suspects: list[asyncpg.Record] = []
        for (r, _), result in zip(sent, results, strict=True):
            if isinstance(result, PERMANENT_REFUSALS):
                suspects.append(r)
            elif isinstance(result, BaseException):
                failure = failure or result
            else:
                published.append(r)
        if suspects:
            # The broker refuses a whole record batch, which may hold innocent rows beside the
            # one it is about: each is sent again alone, by a fresh producer (the refusal leaves
            # this one's sequence numbers out of step), and only a row refused alone is parked.
            await self._discard_producer()
            alone_failure = await self._send_alone(suspects, published, refused)
            failure = failure or alone_failure
        await outbox.settle(conn, [r["id"] for r in published], refused)
        kinds: dict[str, int] = {}
        for r in published:
            kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
        for kind, n in kinds.items():
            self._metrics.outbox_published.labels(kind).inc(n)
        for row_id, reason in refused.items():
            log.error("outbox row parked: the broker refuses it", outbox_id=row_id, error=reason)
        if failure is not None:
            # What was published is deleted; the rest is sent again by a fresh producer.
            raise failure

    async def _send_alone(
        self,
        rows: list[asyncpg.Record],
        published: list[asyncpg.Record],
        refused: dict[int, str],
    ) -> BaseException | None:
        producer = await self._started_producer()
        try:
            for r in rows:
                try:
                    await (await _send(producer, r))
                except PERMANENT_REFUSALS as exc:
                    refused[r["id"]] = _reason(exc)
                except Exception as exc:
                    return exc
                else:
                    published.append(r)
        finally:
            await producer.stop()
        return None


async def _send(producer: AIOKafkaProducer, row: asyncpg.Record) -> asyncio.Future[Any]:
    """Hand one outbox row to the producer; the future resolves when the broker has it.

    The publish span continues the trace the row carries. The row goes out exactly as stored,
    its trace headers included: a row published again after a crash is the same bytes."""
    headers = unpack_headers(row["headers"])
    span = tracing.publish_span(row["topic"], headers)
    try:
        future: asyncio.Future[Any] = await producer.send(
            row["topic"], value=row["value"], key=row["key"], headers=headers
        )
    except BaseException as exc:
        tracing.failed([span], exc)
        raise
    tracing.end_when_done(span, future)
    return future


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
