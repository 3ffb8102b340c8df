"""The periodic sweep: PENDING applications are re-decided so that ENROLMENT_UNKNOWN and
ENROLMENT_STALE resolve by themselves once data arrives, whichever path it came by, and so that
a race between an application and its employer's first record cannot leave it pending."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from ptsp_gate import redecide
from ptsp_gate.config import Settings
from ptsp_gate.observability.logging import get_logger
from ptsp_gate.observability.metrics import Metrics
from ptsp_gate.policy import PolicyBook

log = get_logger(__name__)

# Several permit-checker instances may run; one sweep at a time is enough.
_SWEEP_LOCK = 0x7074_7370_0003


async def sweep_once(
    pool: asyncpg.Pool,
    metrics: Metrics,
    settings: Settings,
    policies: PolicyBook,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[redecide.Change] | None:
    """One sweep; None when another instance holds the sweep."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _SWEEP_LOCK):
            metrics.sweep_runs.labels("skipped").inc()
            return None
        changes = await redecide.sweep_pending(
            conn,
            policies=policies,
            window_days=settings.redecide_window_days,
            now=clock(),
            decisions_topic=settings.topic_decisions,
            event_source=settings.event_source,
        )
    redecide.observe(metrics, changes, trigger="sweep")
    metrics.sweep_runs.labels("ok").inc()
    if changes:
        log.info("sweep re-decided pending applications", changed=len(changes))
    return changes


async def sweeper(
    pool: asyncpg.Pool, metrics: Metrics, settings: Settings, policies: PolicyBook
) -> None:
    while True:
        await asyncio.sleep(settings.sweep_interval_s)
        try:
            await sweep_once(pool, metrics, settings, policies)
        except Exception as exc:  # the next run retries; the consumer must not be disturbed
            metrics.sweep_runs.labels("failed").inc()
            log.warning("sweep failed", error=f"{type(exc).__name__}: {exc}"[:300])
