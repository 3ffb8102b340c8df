"""Coverage impact (`ptsp-gate coverage`, the coverage gauges): per region and period, the
applications decided by outcome, and of the employers flagged in the period how many were cleared
and how fast, how many are still flagged, and why they were flagged.

Read from the compliance projection's episodes and the decision history, grouped in SQL: a year
of a whole country is a few aggregate queries, however many decisions it holds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

CLEARED_WITHIN_DAYS = (30, 60, 90)
OUTCOMES = ("CLEARED", "BLOCKED", "PENDING", "REJECTED")
TOP_REASONS = 3


@dataclass(frozen=True, slots=True)
class Question:
    since: datetime
    until: datetime  # exclusive
    by: str  # "month" or "quarter"
    timezone: str  # periods are calendar months or quarters in this zone
    region: str | None
    window_days: int  # an open episode whose blocked applications are older has expired
    now: datetime


@dataclass(slots=True)
class Figures:
    region_code: str | None
    period: datetime
    applications: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    employers_flagged: int = 0
    flag_episodes: int = 0
    cleared: dict[int, int] = field(default_factory=lambda: dict.fromkeys(CLEARED_WITHIN_DAYS, 0))
    cleared_total: int = 0
    median_days_to_clear: float | None = None
    ended_otherwise: int = 0
    still_flagged: int = 0
    expired: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def row(self) -> dict[str, Any]:
        """The figures as one flat row (the report's and the export's)."""
        return {
            "region_code": self.region_code,
            "period": self.period,
            **{f"applications_{o.lower()}": self.applications[o] for o in OUTCOMES},
            "employers_flagged": self.employers_flagged,
            "flag_episodes": self.flag_episodes,
            **{f"cleared_within_{d}d": self.cleared[d] for d in CLEARED_WITHIN_DAYS},
            "cleared": self.cleared_total,
            "median_days_to_clear": self.median_days_to_clear,
            "ended_otherwise": self.ended_otherwise,
            "still_flagged": self.still_flagged,
            "expired": self.expired,
            "top_reasons": [f"{code} {n}" for code, n in self.reasons.most_common(TOP_REASONS)],
        }


# Employers flagged whose episode has expired: none of their blocked applications was submitted
# within the re-decision window (`$5`: its start), so the gate will not decide them again.
# Computed once, for the employers flagged now, rather than once per episode.
_EXPIRED_EMPLOYERS = """
    SELECT c.nib FROM employer_compliance c
    WHERE c.outcome = 'BLOCKED' AND NOT EXISTS (
        SELECT FROM application_standing s
        WHERE s.nib = c.nib AND s.outcome = 'BLOCKED'
          AND (s.submitted_at >= $5 OR s.submitted_at IS NULL))"""


def _region_filter(column: str, q: Question, params: list[Any]) -> str:
    if q.region is None:
        return ""
    params.append(q.region)
    return f" AND {column} = ${len(params)}"


async def report(conn: asyncpg.Connection, q: Question) -> list[Figures]:
    """The figures of every (region, period) with any activity, in region then period order. Run
    it in a repeatable-read transaction so that the three queries see one state."""
    figures: dict[tuple[str | None, datetime], Figures] = {}

    def at(region: str | None, period: datetime) -> Figures:
        key = (region, period)
        if key not in figures:
            figures[key] = Figures(region, period)
        return figures[key]

    params: list[Any] = [q.by, q.timezone, q.since, q.until]
    region = _region_filter("region_code", q, params)
    for r in await conn.fetch(
        f"""
        SELECT region_code, date_trunc($1, decided_at AT TIME ZONE $2) AS period, outcome,
               count(*) AS n
        FROM compliance_decision
        WHERE supersedes IS NULL AND decided_at >= $3 AND decided_at < $4{region}
        GROUP BY 1, 2, 3
        """,
        *params,
    ):
        at(r["region_code"], r["period"]).applications[r["outcome"]] = r["n"]

    params = [q.by, q.timezone, q.since, q.until, q.now - timedelta(days=q.window_days)]
    region = _region_filter("e.region_code", q, params)
    cleared_within = ", ".join(
        f"count(*) FILTER (WHERE e.ended_outcome = 'CLEARED'"
        f" AND e.ended_at <= e.began_at + interval '{d} days') AS cleared_{d}"
        for d in CLEARED_WITHIN_DAYS
    )
    for r in await conn.fetch(
        f"""
        SELECT e.region_code, date_trunc($1, e.began_at AT TIME ZONE $2) AS period,
               count(DISTINCT e.nib) AS employers, count(*) AS episodes, {cleared_within},
               count(*) FILTER (WHERE e.ended_outcome = 'CLEARED') AS cleared,
               percentile_cont(0.5) WITHIN GROUP (
                   ORDER BY extract(epoch FROM e.ended_at - e.began_at) / 86400
               ) FILTER (WHERE e.ended_outcome = 'CLEARED') AS median_days,
               count(*) FILTER (WHERE e.ended_seq IS NOT NULL
                                  AND e.ended_outcome <> 'CLEARED') AS ended_otherwise,
               count(*) FILTER (WHERE e.ended_seq IS NULL AND x.nib IS NULL) AS still_flagged,
               count(*) FILTER (WHERE x.nib IS NOT NULL) AS expired
        FROM compliance_episode e
        LEFT JOIN ({_EXPIRED_EMPLOYERS}) x ON x.nib = e.nib AND e.ended_seq IS NULL
        WHERE e.began_at >= $3 AND e.began_at < $4{region}
        GROUP BY 1, 2
        """,
        *params,
    ):
        f = at(r["region_code"], r["period"])
        f.employers_flagged, f.flag_episodes = r["employers"], r["episodes"]
        f.cleared = {d: r[f"cleared_{d}"] for d in CLEARED_WITHIN_DAYS}
        f.cleared_total = r["cleared"]
        f.median_days_to_clear = None if r["median_days"] is None else round(r["median_days"], 1)
        f.ended_otherwise, f.still_flagged, f.expired = (
            r["ended_otherwise"],
            r["still_flagged"],
            r["expired"],
        )

    params = [q.by, q.timezone, q.since, q.until]
    region = _region_filter("region_code", q, params)
    for r in await conn.fetch(
        f"""
        SELECT region_code, date_trunc($1, began_at AT TIME ZONE $2) AS period,
               unnest(reason_codes) AS code, count(*) AS n
        FROM compliance_episode
        WHERE began_at >= $3 AND began_at < $4{region}
        GROUP BY 1, 2, 3
        ORDER BY 1, 2, 3  -- reasons equally frequent are listed by code, whatever the plan
        """,
        *params,
    ):
        at(r["region_code"], r["period"]).reasons[r["code"]] = r["n"]

    return [figures[k] for k in sorted(figures, key=lambda k: (k[0] or "", k[1]))]


@dataclass(frozen=True, slots=True)
class RegionNow:
    """A region's figures for the gauges: flagged now, and the last `days` days' episodes."""

    region_code: str
    flagged_now: int
    flagged_recently: int
    cleared_recently: int
    median_days_to_clear: float | None


async def regions_now(
    conn: asyncpg.Connection, *, now: datetime, days: int, window_days: int
) -> list[RegionNow]:
    rows = await conn.fetch(
        f"""
        WITH recent AS (
            SELECT region_code,
                   count(*) AS flagged,
                   count(*) FILTER (WHERE ended_outcome = 'CLEARED') AS cleared,
                   percentile_cont(0.5) WITHIN GROUP (
                       ORDER BY extract(epoch FROM ended_at - began_at) / 86400
                   ) FILTER (WHERE ended_outcome = 'CLEARED') AS median_days
            FROM compliance_episode WHERE began_at >= $1
            GROUP BY 1
        ), current AS (
            SELECT c.region_code, count(*) AS flagged
            FROM employer_compliance c
            WHERE c.outcome = 'BLOCKED'
              AND c.nib NOT IN ({_EXPIRED_EMPLOYERS.replace("$5", "$2")})
            GROUP BY 1
        )
        SELECT coalesce(r.region_code, c.region_code) AS region_code,
               coalesce(c.flagged, 0) AS flagged_now, coalesce(r.flagged, 0) AS flagged_recently,
               coalesce(r.cleared, 0) AS cleared_recently, r.median_days
        FROM recent r FULL JOIN current c ON c.region_code = r.region_code
        WHERE coalesce(r.region_code, c.region_code) IS NOT NULL
        ORDER BY 1
        """,
        now - timedelta(days=days),
        now - timedelta(days=window_days),
    )
    return [
        RegionNow(
            r["region_code"],
            r["flagged_now"],
            r["flagged_recently"],
            r["cleared_recently"],
            r["median_days"],
        )
        for r in rows
    ]
