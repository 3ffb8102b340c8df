"""Options, the database, and the report of the officer-queries bench."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ptsp_gate.adapters import migrations
from ptsp_gate.adapters.postgres import connect
from ptsp_gate.embedded import harness

from . import history, measure

RESULTS = Path(__file__).resolve().parent.parent / "results"
GOALS = {
    "first page of a region's flagged list, p50 <= 50 ms": (
        "pages",
        "first_page",
        "p50_ms",
        50,
        "<=",
    ),
    "national flagged export (CSV) >= 100,000 rows/s": (
        "exports",
        "csv",
        "rows_per_s",
        100_000,
        ">=",
    ),
    "lookup by NIB, p50 <= 20 ms": ("lookups", "by_nib", "p50_ms", 20, "<="),
    "lookup by name, p50 <= 20 ms": ("lookups", "by_name", "p50_ms", 20, "<="),
    "coverage, a year of all regions <= 2 s": ("coverage", None, "seconds_best", 2, "<="),
}


def say(text: str) -> None:
    print(f"[officer {datetime.now():%H:%M:%S}] {text}", file=sys.stderr, flush=True)


def options(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--applications", type=int, default=1_000_000)
    p.add_argument("--employers", type=int, default=300_000, help="at most 999,999")
    p.add_argument(
        "--blocked-share",
        type=float,
        default=0.3,
        help="employers whose first enrolment state blocks them",
    )
    p.add_argument(
        "--fixed-share",
        type=float,
        default=0.45,
        help="of those, the share that fix it within 80 days and are re-decided",
    )
    p.add_argument("--samples", type=int, default=200, help="runs of each timed look-up")
    p.add_argument(
        "--baseline-limit",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="time allowed to the old flagged query (the baseline)",
    )
    p.add_argument("--seed", type=int, default=20_261_130)
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the database built (DATABASE_URL only) and print its DSN",
    )
    p.add_argument(
        "--measure-only",
        metavar="DSN",
        help="measure on a database an earlier --keep run built; build nothing",
    )
    args = p.parse_args(argv)
    if args.keep and not os.environ.get("DATABASE_URL"):
        p.error("--keep needs DATABASE_URL: the embedded server lives in a temporary directory")
    if not 1 <= args.employers <= 999_999:
        p.error("--employers must be between 1 and 999999")
    if args.applications < 1:
        p.error("--applications must be at least 1")
    return args


def verdicts(found: dict[str, Any]) -> dict[str, str]:
    out = {}
    for goal, (group, item, key, limit, sense) in GOALS.items():
        value = found[group][item][key] if item else found[group][key]
        met = value <= limit if sense == "<=" else value >= limit
        out[goal] = f"{'met' if met else 'MISSED'} ({value:,})"
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": vars(args),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
    }
    if args.measure_only:
        await _on(args.measure_only, "kept", result, args, build=False)
    else:
        with (
            tempfile.TemporaryDirectory(prefix="ptsp-officer-") as workdir,
            harness.postgres_server(Path(workdir) / "pgdata") as (server_dsn, pg_kind),
        ):
            dsn = await harness.create_database(server_dsn, "ptsp_gate_officer")
            try:
                await _on(dsn, pg_kind, result, args, build=True, workdir=Path(workdir))
            finally:
                if args.keep:
                    say(f"database kept: {dsn}")
                else:
                    await harness.drop_database(server_dsn, dsn)
    result["goals"] = verdicts(result)
    return result


async def _on(
    dsn: str,
    pg_kind: str,
    result: dict[str, Any],
    args: argparse.Namespace,
    *,
    build: bool,
    workdir: Path | None = None,
) -> None:
    conn = await connect(dsn)
    try:
        await migrations.migrate(conn)
        result["postgres"] = {
            "kind": pg_kind,
            "version": await conn.fetchval("SHOW server_version"),
            "pg_trgm": await conn.fetchval(
                "SELECT count(*) > 0 FROM pg_extension WHERE extname = 'pg_trgm'"
            ),
        }
        if build and workdir is not None:
            say(f"PostgreSQL {result['postgres']['version']} ({pg_kind}); building history")
            result["history"] = await history.build(
                conn,
                applications=args.applications,
                employer_count=args.employers,
                blocked_share=args.blocked_share,
                fixed_share=args.fixed_share,
                book=history.policies(workdir),
                seed=args.seed,
                say=say,
            )
        say("measuring")
        result.update(
            await measure.all_of_them(
                conn,
                employers=args.employers,
                samples=args.samples,
                baseline_limit_s=args.baseline_limit,
            )
        )
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    began = time.perf_counter()
    result = asyncio.run(run(args))
    result["wall_seconds"] = round(time.perf_counter() - began)
    RESULTS.mkdir(exist_ok=True)
    kind = result["postgres"]["kind"].lower().replace("_", "-")
    path = RESULTS / f"officer-{datetime.now(UTC):%Y%m%dT%H%M%S}-{kind}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result, indent=2, default=str))
    say(f"written to {path}")
    return 0
