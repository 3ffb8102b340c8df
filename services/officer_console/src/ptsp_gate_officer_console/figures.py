"""The coverage figures of the last twelve months, computed ahead for every region and kept in
the process: the dashboard and the API's default question read them instead of recomputing a
year of history for each page (about 0.3 s for a regency and 1.7 s for the country on a
national-scale history; bench/console_pages.py). Figures per month move slowly; the page says
how old they are, and the employers flagged now are always read live."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from ptsp_gate.observability.logging import get_logger
from ptsp_gate.stores import coverage

log = get_logger(__name__)

MONTHS = 12


def months_back(now: datetime, months: int) -> datetime:
    """The first instant (UTC) of the month `months - 1` before `now`'s."""
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for _ in range(months - 1):
        start = (start - timedelta(days=1)).replace(day=1)
    return start


@dataclass(frozen=True, slots=True)
class Figures:
    rows: list[dict[str, Any]]  # per region and month
    as_of: datetime


class FiguresCache:
    def __init__(self, every_s: float, timezone: str, window_days: int) -> None:
        self.every_s = every_s
        self.timezone = timezone
        self.window_days = window_days
        self._figures: Figures | None = None

    async def refresh(self, conn: asyncpg.Connection) -> None:
        now = datetime.now(UTC)
        question = coverage.Question(
            since=months_back(now, MONTHS),
            until=now + timedelta(seconds=1),
            by="month",
            timezone=self.timezone,
            region=None,
            window_days=self.window_days,
            now=now,
        )
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            rows = [f.row() for f in await coverage.report(conn, question)]
        self._figures = Figures(rows, now)

    def rows(self, regions: Sequence[str] | None) -> Figures | None:
        """The figures of these regions (None: all), unless they are older than two refreshes
        (the refresh is failing): then the caller computes them itself."""
        figures = self._figures
        if figures is None or datetime.now(UTC) - figures.as_of > timedelta(
            seconds=2 * self.every_s
        ):
            return None
        if regions is None:
            return figures
        wanted = set(regions)
        return Figures([r for r in figures.rows if r["region_code"] in wanted], figures.as_of)

    async def keep(self, pool: asyncpg.Pool) -> None:
        """Refresh every `every_s` until cancelled; a failure waits for the next turn."""
        while True:
            await asyncio.sleep(self.every_s)
            try:
                async with pool.acquire() as conn:
                    await self.refresh(conn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("coverage figures not refreshed", error=f"{type(exc).__name__}: {exc}")
