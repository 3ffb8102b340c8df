"""The enrolment-sync service's background work: metrics that only the database can answer
(bulk import totals, the projection's freshness, coverage per region)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import asyncpg

from ptsp_gate.observability.logging import get_logger
from ptsp_gate.observability.metrics import Metrics
from ptsp_gate.stores import coverage, enrolments

log = get_logger(__name__)


async def projection_metrics_refresher(
    pool: asyncpg.Pool,
    metrics: Metrics,
    *,
    max_age_days: int,
    window_days: int,
    every_s: float = 15.0,
    freshness_every_s: float = 60.0,
) -> None:
    """Bulk imports run as a command, not in the service; their row counts are recorded in the
    database and exposed here, so one /metrics shows both paths. The projection's freshness is
    read here too: it moves with imports as well as with the stream, and so does coverage."""
    metrics.expose_enrolment_projection()
    next_freshness = 0.0
    while True:
        try:
            row = await enrolments.import_totals(pool)
            if row is not None:
                for result in ("applied", "stale", "rejected"):
                    metrics.import_rows.labels(result).set(row[result])
                metrics.import_redecisions.set(row["redecisions"])
            if time.monotonic() >= next_freshness:
                row = await enrolments.freshness(pool, max_age_days)
                next_freshness = time.monotonic() + freshness_every_s
                if row is not None:
                    if row["newest"] is not None:
                        metrics.enrolment_newest_as_of.set(row["newest"].timestamp())
                    metrics.enrolment_records.labels("fresh").set(row["fresh"])
                    metrics.enrolment_records.labels("stale").set(row["stale"])
                async with pool.acquire() as conn:
                    regions = await coverage.regions_now(
                        conn, now=datetime.now(UTC), days=90, window_days=window_days
                    )
                metrics.set_coverage(regions)
        except Exception as exc:  # advisory: a failed refresh must never hurt the service
            log.debug("projection metrics refresh failed", error=str(exc))
        await asyncio.sleep(every_s)
