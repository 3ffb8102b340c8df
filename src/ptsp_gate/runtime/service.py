"""What both services share at run time: the consumer loop's ack/retry discipline, the outbox
relay, consumer-lag sampling, and the HTTP probes. A service supplies only its topic, group and
batch handler."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.kafka import KafkaBroker, Topic
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from prometheus_client import make_asgi_app

from ptsp_gate.adapters import kafka, migrations
from ptsp_gate.adapters.postgres import TRANSIENT_DB_ERRORS, create_pool
from ptsp_gate.config import Settings
from ptsp_gate.observability.logging import get_logger, mask_text
from ptsp_gate.observability.metrics import Metrics, mark_process_dead
from ptsp_gate.runtime.errors import TransientFailure
from ptsp_gate.runtime.intake import RawRecord
from ptsp_gate.runtime.offset_commits import OffsetCommitter
from ptsp_gate.runtime.progress import PartitionProgress
from ptsp_gate.runtime.relay import OutboxRelay
from ptsp_gate.stores import outbox

log = get_logger(__name__)


class RecordHandler(Protocol):
    """What a service does with its records: a batch in one go, and a record that cannot be
    handled at all set aside as a dead letter."""

    async def handle_batch(self, records: Sequence[RawRecord]) -> None: ...

    async def dead_letter(self, record: RawRecord, reason: str) -> None: ...


# A batch that fails this many times in a row, from the same offsets, with an error that is not
# transient, while PostgreSQL and Kafka answer, is taken apart: the cause follows a record.
ISOLATE_AFTER_FAILURES = 2
# Attempts for one record taken out of such a batch before it is dead-lettered.
ATTEMPTS_ALONE = 2
# How long one readiness answer is served to every probe.
READINESS_CACHE_S = 1.5


class StartupError(RuntimeError):
    """A condition that stops a service from starting, stated in one line."""


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


Background = Callable[[asyncpg.Pool, Metrics], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    topic: str
    group: str
    make_handler: Callable[[asyncpg.Pool, Metrics], RecordHandler]
    background: Background | None = None  # a loop run beside the consumer until shutdown
    policy_version: str = ""  # the national policy's, shown on ptsp_gate_build_info


class Service:
    """One consumer service: pool, FastStream broker with a batch subscriber, relay, lag sampler."""

    def __init__(self, spec: ServiceSpec, settings: Settings, metrics: Metrics | None = None):
        if not settings.database_url:
            raise StartupError("DATABASE_URL is not set")
        self.spec = spec
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.metrics.set_build(spec.policy_version)
        # Series that exist from the start, so rate() and increase() see their first events.
        self.metrics.records_received.labels(spec.topic)
        self.metrics.retries.labels(spec.name)
        self.metrics.retries.labels("outbox_relay")
        self.metrics.consumer_stalled.labels(spec.name)
        self.broker: KafkaBroker = kafka.make_broker(settings, self.metrics.registry)
        self.pool: asyncpg.Pool | None = None
        self.relay = OutboxRelay(
            dsn=settings.dsn(),
            producer_factory=lambda: kafka.make_producer(settings),
            metrics=self.metrics,
            batch_size=settings.relay_batch_size,
            max_backoff_s=settings.retry_max_delay_s,
        )
        self._handler: RecordHandler | None = None
        self._progress = PartitionProgress(now=0.0)  # replaced when the service starts
        self._readiness: asyncio.Future[dict[str, str]] | None = None
        self._readiness_at = 0.0
        self.failed = False  # the consumer died under a running server; the process must go
        self._backoff = Backoff(max_s=settings.retry_max_delay_s)
        self._lag_task: asyncio.Task[None] | None = None
        self._background_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._subscriber = self.broker.subscriber(
            # Topics are provisioned by operators (partitions, retention); never created here.
            Topic(spec.topic, declare=False),
            group_id=spec.group,
            batch=True,
            max_records=settings.batch_max_records,
            batch_timeout_ms=settings.batch_timeout_ms,
            # A group's first start reads from the beginning: nothing published earlier is missed.
            auto_offset_reset="earliest",
            # A producer that writes in Kafka transactions (a licensing system's own outbox, say)
            # may abort: what it aborted never happened and must not be decided. For producers
            # without transactions this reads exactly the same records.
            isolation_level="read_committed",
            ack_policy=AckPolicy.MANUAL,
            parser=kafka.lenient_parser,
            decoder=kafka.raw_records,
        )
        # The decorator returns a call wrapper; the subscriber (and its consumer) is kept apart.
        self._subscriber(self._on_batch)
        self._commits = OffsetCommitter(lambda: self._subscriber.consumer, spec.name)

    async def _on_batch(self, records: Any, msg: KafkaMessage) -> None:
        if not records:
            return
        self.metrics.records_received.labels(self.spec.topic).inc(len(records))
        start = _batch_start(records)
        try:
            await self._handle(records, start)
        except Exception as exc:  # nothing may be skipped: rewind and retry
            delay = self._backoff.next()
            self.metrics.retries.labels(self.spec.name).inc()
            log.warning(
                "batch not committed; will retry",
                service=self.spec.name,
                error=_error_text(exc),
                records=len(records),
                first_offset=records[0].offset,
                partition=records[0].partition,
                retry_in_s=delay,
                exc_info=not _is_expected(exc),
            )
            await msg.nack()
            await asyncio.sleep(delay)
            return
        self._progress.handled(start, asyncio.get_running_loop().time())
        self._backoff.reset()
        self._commits.handled(records)
        if self._stopping:  # the drain's last batch: its commit must land before the consumer goes
            await self._commits.flush(self.settings.graceful_timeout_s)

    async def _handle(self, records: Sequence[RawRecord], start: dict[int, int]) -> None:
        assert self._handler is not None
        self._progress.begin(start)
        try:
            await self._handler.handle_batch(records)
            return
        except Exception as exc:
            if _is_expected(exc):
                # A lost connection, a timeout, a lock: the infrastructure's, whatever the
                # records. Retried until it passes, never dead-lettered.
                self._progress.rewound(start)
                raise
            failures = self._progress.failed(start)
            if failures < ISOLATE_AFTER_FAILURES or not await self._infrastructure_healthy():
                raise
        log.error(
            "batch keeps failing while PostgreSQL and Kafka answer; handling its records alone",
            service=self.spec.name,
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
        assert self._handler is not None
        for record in records:
            for attempt in range(1, ATTEMPTS_ALONE + 1):
                try:
                    await self._handler.handle_batch([record])
                    break
                except Exception as exc:
                    if _is_expected(exc) or not await self._infrastructure_healthy():
                        raise
                    if attempt == ATTEMPTS_ALONE:
                        await self._handler.dead_letter(record, _error_text(exc))

    async def _infrastructure_healthy(self) -> bool:
        """PostgreSQL answers a query and a Kafka broker answers, each within 2 s."""
        if self.pool is None:
            return False
        try:
            async with asyncio.timeout(2.0), self.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        except Exception:
            return False
        return bool(await self.broker.ping(timeout=2.0))

    async def open(self) -> None:
        """Connect to PostgreSQL and check the schema; fail fast with one line if either is off."""
        assert self.settings.database_url
        if self.pool is not None:
            return
        try:
            self.pool = await create_pool(self.settings.dsn(), self.settings.db_pool_size)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StartupError(f"cannot connect to PostgreSQL: {exc}") from exc
        async with self.pool.acquire() as conn:
            missing = await migrations.pending(conn)
        if missing:
            await self.pool.close()
            self.pool = None
            raise StartupError(
                f"database schema is behind ({', '.join(missing)}): run `ptsp-gate migrate`"
            )
        self._handler = self.spec.make_handler(self.pool, self.metrics)

    async def release(self) -> None:
        """Undo open() alone, for a process that only checked that the service can start."""
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    async def run_background(self) -> None:
        self._progress = PartitionProgress(now=asyncio.get_running_loop().time())
        self.relay.start()
        self._lag_task = asyncio.create_task(self._sample(), name="gauge-sampler")
        if self.spec.background is not None and self.pool is not None:
            self._background_task = asyncio.create_task(
                self.spec.background(self.pool, self.metrics), name=f"{self.spec.name}-background"
            )
        log.info(
            "service started", service=self.spec.name, topic=self.spec.topic, group=self.spec.group
        )

    async def start(self) -> None:
        await self.open()
        await self.broker.start()
        await self.run_background()

    async def stop(self) -> None:
        """Drain: finish the batch in hand and commit it, publish what is committed, close."""
        for task in (self._lag_task, self._background_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._lag_task = self._background_task = None
        self._stopping = True
        await self._commits.flush(self.settings.graceful_timeout_s)
        await self.broker.stop()
        await self.relay.stop(drain_timeout_s=self.settings.graceful_timeout_s)
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        mark_process_dead(os.getpid())
        log.info("service stopped", service=self.spec.name)

    async def _sample(self, every_s: float = 5.0) -> None:
        """Gauges sampled on a timer: consumer lag, and the outbox backlog."""
        while True:
            await asyncio.sleep(every_s)
            if self.pool is not None:
                try:
                    async with asyncio.timeout(every_s), self.pool.acquire() as conn:
                        await outbox.sample_backlog(conn, self.metrics)
                except Exception as exc:  # advisory, as lag is
                    log.debug("outbox sampling failed", error=str(exc))
            consumer = self._subscriber.consumer
            if consumer is None:
                continue
            try:
                lags: dict[tuple[str, int], int] = {}
                for tp in consumer.assignment():
                    high = consumer.highwater(tp)
                    if high is None:
                        continue
                    position = await consumer.position(tp)
                    lags[tp.topic, tp.partition] = max(high - position, 0)
                self.metrics.set_lag(self.spec.group, lags)
                self._progress.sampled(
                    {partition: lag for (_, partition), lag in lags.items()},
                    asyncio.get_running_loop().time(),
                )
            except Exception as exc:  # lag is advisory; never let sampling hurt the service
                log.debug("lag sampling failed", error=str(exc))
            self.metrics.consumer_stalled.labels(self.spec.name).set(self.stalled_seconds())

    async def readiness(self) -> dict[str, str]:
        """Problems that make the service not ready; empty when ready.

        Probes may come by the hundred (every replica's kubelet, load balancers, people): the
        answer is shared for ``READINESS_CACHE_S`` and by callers that arrive while a check runs,
        so probes cannot take the connections decisions need."""
        loop = asyncio.get_running_loop()
        if self._readiness is not None and (
            not self._readiness.done() or loop.time() - self._readiness_at < READINESS_CACHE_S
        ):
            return dict(await asyncio.shield(self._readiness))
        self._readiness_at = loop.time()
        self._readiness = asyncio.ensure_future(self._check_readiness())
        return dict(await asyncio.shield(self._readiness))

    async def _check_readiness(self) -> dict[str, str]:
        # Generic reasons only: the body is served to anyone who can reach the port, and a raw
        # database error can name hosts, users and database names. The detail goes to the log.
        problems: dict[str, str] = {}
        if not await self.broker.ping(timeout=2.0):
            problems["kafka"] = "broker not reachable"
        consumer = self._subscriber.consumer
        if consumer is None or not consumer.assignment():
            # A consumer that failed to join its group polls on without ever getting work; so does
            # a replica beyond the partition count. Neither is serving, and both should show it.
            problems["consumer"] = (
                f"no partitions of {self.spec.topic} assigned in group {self.spec.group}"
            )
        stalled = self.stalled_seconds()
        if stalled > self.settings.consumer_stuck_after_s:
            problems["consumer"] = (
                f"no progress for {stalled:.0f} s with records waiting "
                f"(limit {self.settings.consumer_stuck_after_s:.0f} s)"
            )
        if self.pool is None:
            problems["postgres"] = "not started"
        else:
            try:
                async with asyncio.timeout(2.0), self.pool.acquire() as conn:
                    missing = await migrations.pending(conn)
                if missing:
                    problems["migrations"] = "pending: " + ", ".join(missing)
            except Exception as exc:
                problems["postgres"] = "not reachable"
                log.warning(
                    "readiness: PostgreSQL check failed",
                    error=_error_text(exc),
                )
        return problems

    def stalled_seconds(self) -> float:
        """How long the consumer has made no progress on a partition that has work: records
        waiting (lag), a batch in hand, or one rewound for retry. 0 while it keeps up or has
        nothing to do."""
        return self._progress.stalled(asyncio.get_running_loop().time())

    def asgi_app(self) -> AsgiFastStream:
        return _ExitWhenBrokerDies(self._faststream_app(), self)  # type: ignore[return-value]

    def _faststream_app(self) -> AsgiFastStream:
        @get
        async def health(scope: Any) -> AsgiResponse:
            return _json_response({"status": "alive", "service": self.spec.name}, 200)

        @get
        async def ready(scope: Any) -> AsgiResponse:
            problems = await self.readiness()
            if problems:
                return _json_response({"status": "not ready", "problems": problems}, 503)
            return _json_response({"status": "ready"}, 200)

        # FastStream runs on_startup before it starts the broker and after_startup once it has;
        # on shutdown, stop() drains the consumer before the relay and pool close.
        return AsgiFastStream(
            self.broker,
            asgi_routes=[
                ("/metrics", make_asgi_app(self.metrics.exposition_registry())),
                ("/health", health),
                ("/ready", ready),
            ],
            on_startup=[self.open],
            after_startup=[self.run_background],
            on_shutdown=[self.stop],
            logger=logging.getLogger("ptsp_gate.app"),
        )


def _json_response(body: dict[str, Any], status: int) -> AsgiResponse:
    return AsgiResponse(
        json.dumps(body).encode(), status, headers={"content-type": "application/json"}
    )


def _batch_start(records: Sequence[RawRecord]) -> dict[int, int]:
    """Where a batch starts, per partition: a rewound batch starts there again."""
    first: dict[int, int] = {}
    for record in records:
        first.setdefault(record.partition, record.offset)
    return first


def _error_text(exc: BaseException) -> str:
    """An error for a log line or a dead letter: its type and text, identifiers masked, bounded."""
    return mask_text(f"{type(exc).__name__}: {exc}")[:500]


def _is_expected(exc: BaseException) -> bool:
    return isinstance(exc, (TransientFailure, *TRANSIENT_DB_ERRORS))


class _ExitWhenBrokerDies:
    """FastStream starts the broker after the server reports startup complete; if that start
    fails (a consumer that cannot join its group, say), the HTTP side would keep answering while
    nothing consumes. A process in that state exits instead, non-zero, so whatever supervises it
    (Kubernetes, compose, the worker supervisor) starts a fresh one."""

    def __init__(self, app: AsgiFastStream, service: Service) -> None:
        self._app = app
        self._service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self._app(scope, receive, send)
            return
        stopping = False

        async def watched_receive() -> Any:
            nonlocal stopping
            message = await receive()
            stopping = stopping or message.get("type") == "lifespan.shutdown"
            return message

        async def watched_send(message: Any) -> None:
            if message.get("type") == "lifespan.shutdown.failed" and not stopping:
                self._service.failed = True
                log.error(
                    "the Kafka consumer stopped; exiting so that a new process takes over",
                    service=self._service.spec.name,
                    error=(str(message.get("message", "")).strip().splitlines() or [""])[-1],
                )
                with contextlib.suppress(Exception):
                    await self._service.stop()
                signal.raise_signal(signal.SIGTERM)  # the server's own graceful exit
            await send(message)

        await self._app(scope, watched_receive, watched_send)
