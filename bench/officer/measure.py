"""The officers' questions, timed on the built history: each the way the commands ask it."""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

from ptsp_gate import demo
from ptsp_gate.reports.flagged_export import export_flagged
from ptsp_gate.stores import compliance, coverage, officer_queries

from .history import END, REGIONS

# The flagged list as it was computed before the projection (migration 0001's view): the
# baseline the first page is compared with, run under a time limit.
BASELINE = """
WITH latest_per_application AS (
    SELECT DISTINCT ON (application_id) * FROM compliance_decision
    WHERE outcome <> 'REJECTED' AND nib IS NOT NULL ORDER BY application_id, seq DESC
), latest_per_employer AS (
    SELECT DISTINCT ON (nib) * FROM compliance_decision
    WHERE outcome <> 'REJECTED' AND nib IS NOT NULL ORDER BY nib, seq DESC
)
SELECT e.nib, e.region_code, e.reason_codes,
    (SELECT min(d.decided_at) FROM compliance_decision d
      WHERE d.nib = e.nib AND d.outcome = 'BLOCKED') AS first_flagged_at,
    (SELECT count(*) FROM latest_per_application a
      WHERE a.nib = e.nib AND a.outcome = 'BLOCKED') AS blocked_applications
FROM latest_per_employer e
WHERE e.outcome = 'BLOCKED' AND e.region_code = $1
ORDER BY e.region_code, first_flagged_at, e.nib
LIMIT 50
"""


async def _times(n: int, ask: Callable[[int], Awaitable[Any]]) -> dict[str, float]:
    spent = []
    for i in range(n):
        began = time.perf_counter()
        await ask(i)
        spent.append((time.perf_counter() - began) * 1000)
    spent.sort()
    return {
        "n": n,
        "p50_ms": round(statistics.median(spent), 2),
        "p99_ms": round(spent[min(n - 1, int(n * 0.99))], 2),
        "max_ms": round(spent[-1], 2),
    }


async def first_pages(conn: asyncpg.Connection, n: int) -> dict[str, Any]:
    async def page(i: int) -> None:
        await officer_queries.flagged_page(conn, region=REGIONS[i % len(REGIONS)], limit=50)

    # A later page: the cursor after the first thousand rows of each region (found untimed).
    cursors = [
        (await officer_queries.flagged_page(conn, region=region, limit=1000))[1]
        for region in REGIONS
    ]

    async def deep(i: int) -> None:
        await officer_queries.flagged_page(
            conn, region=REGIONS[i % len(REGIONS)], limit=50, after=cursors[i % len(REGIONS)]
        )

    async def reason(i: int) -> None:
        await officer_queries.flagged_page(
            conn, region=REGIONS[i % len(REGIONS)], reason="PROGRAMS_MISSING", limit=50
        )

    return {
        "first_page": await _times(n, page),
        "page_after_1000": await _times(n, deep),
        "first_page_one_reason": await _times(n, reason),
    }


async def baseline(conn: asyncpg.Connection, limit_s: float) -> dict[str, Any]:
    await conn.execute(f"SET statement_timeout = {int(limit_s * 1000)}")
    began = time.perf_counter()
    try:
        await conn.fetch(BASELINE, REGIONS[0])
        finished = True
    except asyncpg.QueryCanceledError:
        finished = False
    finally:
        await conn.execute("SET statement_timeout = 0")
    return {"seconds": round(time.perf_counter() - began, 2), "finished": finished}


async def exports(conn: asyncpg.Connection, workdir: Path) -> dict[str, Any]:
    found = {}
    for fmt in ("csv", "jsonl", "xlsx"):
        target = workdir / f"flagged.{fmt}"
        began = time.perf_counter()
        rows = await export_flagged(conn, fmt=fmt, language="id", output=target)
        seconds = time.perf_counter() - began
        found[fmt] = {
            "rows": rows,
            "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds),
            "bytes": target.stat().st_size,
        }
    return found


async def lookups(conn: asyncpg.Connection, employers: int, n: int) -> dict[str, Any]:
    rnd = random.Random(7)
    nibs = [demo.nib(rnd.randrange(employers // 4)) for _ in range(n)]  # ones that applied
    names = [f"Maju Jaya {rnd.randrange(employers)}" for _ in range(n)]
    npwps = [demo.npwp15(rnd.randrange(employers // 4)) for _ in range(n)]
    return {
        "by_nib": await _times(n, lambda i: officer_queries.employer(conn, nibs[i])),
        "by_name": await _times(n, lambda i: officer_queries.by_name(conn, names[i])),
        "by_npwp": await _times(n, lambda i: officer_queries.by_npwp(conn, npwps[i])),
    }


async def coverage_year(conn: asyncpg.Connection) -> dict[str, Any]:
    question = coverage.Question(
        since=END - timedelta(days=365),
        until=END,
        by="month",
        timezone="Asia/Jakarta",
        region=None,
        window_days=90,
        now=END,
    )
    runs = []
    for _ in range(3):
        began = time.perf_counter()
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await coverage.report(conn, question)
        runs.append(time.perf_counter() - began)
    began = time.perf_counter()
    await coverage.regions_now(conn, now=END, days=90, window_days=90)
    gauges = time.perf_counter() - began
    return {
        "rows": len(rows),
        "seconds_best": round(min(runs), 3),
        "seconds_worst": round(max(runs), 3),
        "gauges_seconds": round(gauges, 3),
    }


async def verify(conn: asyncpg.Connection) -> dict[str, Any]:
    began = time.perf_counter()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        found = await compliance.verify(conn)
    return {
        "seconds": round(time.perf_counter() - began, 2),
        "equal": not any(d.missing or d.extra for d in found),
        "rows": {d.table: d.rows_stored for d in found},
    }


async def sizes(conn: asyncpg.Connection) -> dict[str, Any]:
    rows = await conn.fetch(
        """
        SELECT relname, n_live_tup, pg_total_relation_size(relid) AS bytes
        FROM pg_stat_user_tables
        WHERE relname IN ('compliance_decision', 'permit_application', 'application_standing',
                          'employer_compliance', 'compliance_episode', 'employer_enrolment')
        ORDER BY relname
        """
    )
    flagged = await conn.fetchval(
        "SELECT count(*) FROM employer_compliance WHERE outcome = 'BLOCKED'"
    )
    outcomes = {
        r["outcome"]: r["n"]
        for r in await conn.fetch(
            "SELECT outcome, count(*) AS n FROM compliance_decision GROUP BY 1"
        )
    }
    return {
        "tables": {
            r["relname"]: {"rows": r["n_live_tup"], "mib": round(r["bytes"] / 2**20)} for r in rows
        },
        "flagged_employers": flagged,
        "decisions_by_outcome": outcomes,
    }


async def all_of_them(
    conn: asyncpg.Connection, *, employers: int, samples: int, baseline_limit_s: float
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ptsp-officer-") as workdir:
        found = {
            "sizes": await sizes(conn),
            "pages": await first_pages(conn, samples),
            "baseline_first_page": await baseline(conn, baseline_limit_s),
            "exports": await exports(conn, Path(workdir)),
            "lookups": await lookups(conn, employers, samples),
            "coverage": await coverage_year(conn),
            "verify": await verify(conn),
        }
    return found
