"""One service process: its PostgreSQL pool, its FastStream broker with a batch subscriber, the
outbox relay and the gauge sampler, put together from what the service supplies (`ServiceSpec`:
a topic, a group, a handler)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import asyncpg
from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker, Topic
from faststream.middlewares import AckPolicy

from ptsp_gate.adapters import kafka, migrations
from ptsp_gate.adapters.postgres import create_pool
from ptsp_gate.config import Settings
from ptsp_gate.observability import tracing
from ptsp_gate.observability.logging import get_logger
from ptsp_gate.observability.metrics import Metrics, mark_process_dead
from ptsp_gate.policy import PolicyBook
from ptsp_gate.runtime.consumer import Backoff, BatchConsumer, RecordHandler, error_text
from ptsp_gate.runtime.context import HandlerContext
from ptsp_gate.runtime.offset_commits import OffsetCommitter
from ptsp_gate.runtime.probes import Problems, SharedReadiness, http_app
from ptsp_gate.runtime.progress import PartitionProgress
from ptsp_gate.runtime.relay import OutboxRelay
from ptsp_gate.stores import outbox
from ptsp_gate.stores.unit_of_work import postgres_transactions

log = get_logger(__name__)

# A loop run beside the consumer until shutdown.
Background = Callable[[asyncpg.Pool, HandlerContext], Coroutine[Any, Any, None]]


class StartupError(RuntimeError):
    """A condition that stops a service from starting, stated in one line."""


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    topic: str
    group: str
    policies: PolicyBook
    make_handler: Callable[[HandlerContext], RecordHandler]
    background: Background | None = None


class Service:
    """One consumer service: pool, FastStream broker with a batch subscriber, relay, sampler."""

    def __init__(self, spec: ServiceSpec, settings: Settings, metrics: Metrics | None = None):
        if not settings.database_url:
            raise StartupError("DATABASE_URL is not set")
        tracing.check_endpoints()
        self.spec = spec
        self.name = spec.name
        self.settings = settings
        self.metrics = metrics or Metrics()
        # The national policy's version, shown on ptsp_gate_build_info.
        self.metrics.set_build(str(spec.policies.national.version))
        # Series that exist from the start, so rate() and increase() see their first events.
        self.metrics.records_received.labels(spec.topic)
        self.metrics.retries.labels(spec.name)
        self.metrics.retries.labels("outbox_relay")
        self.metrics.consumer_stalled.labels(spec.name)
        self.broker: KafkaBroker = kafka.make_broker(settings, self.metrics.registry)
        self.pool: asyncpg.Pool | None = None
        self._tracer_provider: Any = None
        self.relay = OutboxRelay(
            dsn=settings.dsn(),
            producer_factory=lambda: kafka.make_producer(settings),
            metrics=self.metrics,
            batch_size=settings.relay_batch_size,
            max_backoff_s=settings.retry_max_delay_s,
        )
        # Late-bound, so that the check can be replaced on a running service.
        self.readiness = SharedReadiness(lambda: self._check_readiness())  # noqa: PLW0108
        self.failed = False  # the consumer died under a running server; the process must go
        self._context: HandlerContext | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._background_task: asyncio.Task[None] | None = None
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
        self._commits = OffsetCommitter(lambda: self._subscriber.consumer, spec.name)
        self.consumer = BatchConsumer(
            service=spec.name,
            topic=spec.topic,
            metrics=self.metrics,
            commits=self._commits,
            infrastructure_healthy=self._infrastructure_healthy,
            backoff=Backoff(max_s=settings.retry_max_delay_s),
            graceful_timeout_s=settings.graceful_timeout_s,
        )
        # The decorator returns a call wrapper; the subscriber (and its consumer) is kept apart.
        self._subscriber(self.consumer.on_batch)

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
        self._context = HandlerContext.from_settings(
            self.settings,
            transactions=postgres_transactions(self.pool),
            metrics=self.metrics,
            policies=self.spec.policies,
            # One pool connection stays free for readiness checks and background work.
            parallel=self.settings.db_pool_size - 1,
        )
        self.consumer.handler = self.spec.make_handler(self._context)

    async def release(self) -> None:
        """Undo open() alone, for a process that only checked that the service can start."""
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    async def run_background(self) -> None:
        # Here, not in open(): `run --workers N` opens once in the parent only to check.
        if self._tracer_provider is None:
            self._tracer_provider = tracing.configure(self.name)
        self.consumer.progress = PartitionProgress(now=asyncio.get_running_loop().time())
        self.relay.start()
        self._lag_task = asyncio.create_task(self._sample(), name="gauge-sampler")
        if self.spec.background is not None and self.pool is not None:
            assert self._context is not None
            self._background_task = asyncio.create_task(
                self.spec.background(self.pool, self._context), name=f"{self.name}-background"
            )
        log.info("service started", service=self.name, topic=self.spec.topic, group=self.spec.group)

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
        self.consumer.stopping = True
        await self._commits.flush(self.settings.graceful_timeout_s)
        await self.broker.stop()
        await self.relay.stop(drain_timeout_s=self.settings.graceful_timeout_s)
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        mark_process_dead(os.getpid())
        log.info("service stopped", service=self.name)
        tracing.shutdown(self._tracer_provider)
        self._tracer_provider = None

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
                self.consumer.progress.sampled(
                    {partition: lag for (_, partition), lag in lags.items()},
                    asyncio.get_running_loop().time(),
                )
            except Exception as exc:  # lag is advisory; never let sampling hurt the service
                log.debug("lag sampling failed", error=str(exc))
            self.metrics.consumer_stalled.labels(self.name).set(self.stalled_seconds())

    async def _check_readiness(self) -> Problems:
        # Generic reasons only: the body is served to anyone who can reach the port, and a raw
        # database error can name hosts, users and database names. The detail goes to the log.
        problems: Problems = {}
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
                log.warning("readiness: PostgreSQL check failed", error=error_text(exc))
        return problems

    def stalled_seconds(self) -> float:
        """How long the consumer has made no progress on a partition that has work: records
        waiting (lag), a batch in hand, or one rewound for retry. 0 while it keeps up or has
        nothing to do."""
        return self.consumer.progress.stalled(asyncio.get_running_loop().time())

    def asgi_app(self) -> AsgiFastStream:
        return http_app(
            self.broker,
            service=self,
            registry=self.metrics.exposition_registry(),
            readiness=self.readiness,
            on_startup=[self.open],
            after_startup=[self.run_background],
            on_shutdown=[self.stop],
        )
