"""Background work of the enrolment-sync service."""

from __future__ import annotations

import asyncio

import asyncpg

from ptsp_gate.config import Settings
from ptsp_gate.observability.logging import get_logger
from ptsp_gate.observability.metrics import Metrics

log = get_logger(__name__)


async def import_metrics_refresher(
    pool: asyncpg.Pool, metrics: Metrics, settings: Settings, every_s: float = 15.0
) -> None:
    """Bulk imports run as a command, not in the service; their row counts are recorded in the
    database and exposed here, so one /metrics shows both paths."""
    while True:
        try:
            row = await pool.fetchrow(
                "SELECT coalesce(sum(rows_applied), 0) AS applied,"
                " coalesce(sum(rows_stale), 0) AS stale,"
                " coalesce(sum(rows_rejected), 0) AS rejected,"
                " coalesce(sum(redecisions), 0) AS redecisions FROM enrolment_import"
            )
            if row is not None:
                for result in ("applied", "stale", "rejected"):
                    metrics.import_rows.labels(result).set(row[result])
                metrics.import_redecisions.set(row["redecisions"])
        except Exception as exc:  # advisory: a failed refresh must never hurt the service
            log.debug("import metrics refresh failed", error=str(exc))
        await asyncio.sleep(every_s)
