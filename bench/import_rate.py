"""How fast is `ptsp-gate enrolment import`, beside a raw COPY of the same file?

A script you run by hand (not a test). It writes a CSV of N valid enrolment records (and a gzip
copy) to a temporary directory, creates a fresh database (on the server of DATABASE_URL, or in an
embedded PostgreSQL), and measures:

  raw COPY      asyncpg copy_to_table of the CSV into a bare table (typed columns, no index):
                what PostgreSQL alone needs to ingest the file
  raw COPY gz   the same from the gzip file, decompressed by Python on the way
  import        `ptsp-gate enrolment import FILE` (the CLI, in its own process) into the empty
                projection: validate, stage, merge, record
  re-import     the same file again: every row stale
  import gz     the gzip file into the emptied projection

and reports rows/s of each, the import/raw COPY ratio, and whether the goal holds (1,000,000 rows
in at most 20 s).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/import_rate.py
    env -u DATABASE_URL .venv/bin/python bench/import_rate.py          # embedded PostgreSQL
    .venv/bin/python bench/import_rate.py --rows 100000 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
from stdnum import luhn

from ptsp_gate.embedded import harness
from ptsp_gate.enrolment_import import FIELDS

GOAL_ROWS = 1_000_000
GOAL_SECONDS = 20.0
PROGRAMS = ("JKK", "JKM", "JHT", "JP", "JKP")
# Place codes python-stdnum knows, for the NIK-shaped NPWPs of individual employers.
NIK_PLACES = ("7314", "3171", "3273", "1101", "5171", "9471", "7371", "3578", "6471", "1371")

BARE_TABLE = """
CREATE TABLE bare_copy (
    nib text, npwp text, npp text, status text, segment text, programs text,
    workers_enrolled integer, arrears_months integer, pds_flags text,
    sanction_requested boolean, as_of timestamptz, version bigint
)
"""


def generate(path: Path, rows: int, nik_share: float, seed: int) -> None:
    """N valid records, one NIB each: legacy 15-digit NPWPs, 16-digit 0-prefixed ones and NIKs."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(FIELDS) + "\n")
        lines: list[str] = []
        for i in range(rows):
            serial = f"{(i * 7_919) % 10**8:08d}"
            kind = rng.random()
            if kind < nik_share:
                day = rng.randint(1, 28) + (40 if rng.random() < 0.4 else 0)
                npwp = (
                    f"{rng.choice(NIK_PLACES)}{rng.randint(1, 40):02d}"
                    f"{day:02d}{rng.randint(1, 12):02d}{rng.randint(50, 99):02d}{i % 10_000:04d}"
                )
            else:
                legacy = serial + luhn.calc_check_digit(serial) + f"{rng.randint(0, 999_999):06d}"
                npwp = legacy if kind < (1 + nik_share) / 2 else "0" + legacy
            programs = "|".join(p for p in PROGRAMS if rng.random() < 0.7)
            pds = "WORKERS" if rng.random() < 0.05 else ""
            status = "ACTIVE" if rng.random() < 0.9 else "INACTIVE"
            lines.append(
                f"{9_120_000_000_000 + i},{npwp},NPP{i:08d},{status},PU,{programs},"
                f"{rng.randint(0, 500)},{rng.randint(0, 3)},{pds},"
                f"{'true' if rng.random() < 0.01 else 'false'},"
                f"2025-06-{rng.randint(1, 30):02d}T{rng.randint(0, 23):02d}:00:00+07:00,"
                f"{rng.randint(1, 1_000)}"
            )
            if len(lines) >= 10_000:
                out.write("\n".join(lines) + "\n")
                lines.clear()
        if lines:
            out.write("\n".join(lines) + "\n")


def gzip_copy(source: Path, target: Path) -> None:
    with source.open("rb") as src, gzip.open(target, "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


async def settle(dsn: str) -> None:
    """A checkpoint between phases, so that none pays for the previous one's dirty pages
    (needs a superuser, as on the embedded server; skipped otherwise)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
    except asyncpg.InsufficientPrivilegeError:
        pass
    finally:
        await conn.close()


async def _gunzipped(path: Path) -> AsyncIterator[bytes]:
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


async def raw_copy(dsn: str, csv_path: Path, gz_path: Path) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(BARE_TABLE)
        await settle(dsn)
        t = time.perf_counter()
        await conn.copy_to_table("bare_copy", source=csv_path, format="csv", header=True)
        plain = time.perf_counter() - t
        await conn.execute("TRUNCATE bare_copy")
        await settle(dsn)
        t = time.perf_counter()
        await conn.copy_to_table("bare_copy", source=_gunzipped(gz_path), format="csv", header=True)
        compressed = time.perf_counter() - t
        await conn.execute("DROP TABLE bare_copy")
    finally:
        await conn.close()
    return {"csv": plain, "gz": compressed}


def cli_import(dsn: str, path: Path) -> dict[str, Any]:
    t = time.perf_counter()
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "ptsp_gate.cli.main", "enrolment", "import", str(path)),
            *("--progress", "none", "--rejects", str(path) + ".rejects.csv"),
        ],
        env={**os.environ, "DATABASE_URL": dsn},
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"import failed ({proc.returncode}): {proc.stderr.strip()}")
    summary = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("  ")
        summary[key.strip()] = value.strip()
    return {"wall_seconds": wall, "summary": summary}


async def measure(workdir: Path, csv_path: Path, gz_path: Path) -> dict[str, Any]:
    with harness.postgres_server(workdir / "pgdata") as (server_dsn, where):
        async with harness.fresh_database(server_dsn, "ptsp_gate_bench", migrate=True) as dsn:
            conn = await asyncpg.connect(dsn)
            try:
                version = await conn.fetchval("SHOW server_version")
            finally:
                await conn.close()
            print(f"PostgreSQL {version} ({where}); raw COPY ...", file=sys.stderr)
            raw = await raw_copy(dsn, csv_path, gz_path)
            runs: dict[str, Any] = {}
            for label, path in (("import", csv_path), ("re-import", csv_path)):
                print(f"{label} ...", file=sys.stderr)
                await settle(dsn)
                runs[label] = await asyncio.to_thread(cli_import, dsn, path)
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute("TRUNCATE employer_enrolment")
            finally:
                await conn.close()
            print("import gz ...", file=sys.stderr)
            await settle(dsn)
            runs["import gz"] = await asyncio.to_thread(cli_import, dsn, gz_path)
    return {"postgres": f"{version} ({where})", "raw_copy_seconds": raw, "imports": runs}


def report(result: dict[str, Any]) -> str:
    rows = result["rows"]
    raw = result["raw_copy_seconds"]
    lines = [
        f"rows: {rows:,}   PostgreSQL {result['postgres']}   CPUs: {result['cpus']}",
        "",
        f"{'phase':<12}{'seconds':>9}{'rows/s':>12}{'vs raw COPY':>13}",
        f"{'raw COPY':<12}{raw['csv']:>9.2f}{rows / raw['csv']:>12,.0f}{'':>13}",
        f"{'raw COPY gz':<12}{raw['gz']:>9.2f}{rows / raw['gz']:>12,.0f}{'':>13}",
    ]
    for label, run in result["imports"].items():
        wall = run["wall_seconds"]
        base = raw["gz"] if label.endswith("gz") else raw["csv"]
        lines.append(f"{label:<12}{wall:>9.2f}{rows / wall:>12,.0f}{base / wall:>12.2f}x")
    lines.append("")
    lines.append(
        "import seconds are the CLI's wall time (process start, connection, validation, "
        "staging COPY, merge, commit)"
    )
    first = result["imports"]["import"]["wall_seconds"] * GOAL_ROWS / rows
    verdict = "met" if first <= GOAL_SECONDS else "MISSED"
    lines.append(
        f"goal: {GOAL_ROWS:,} rows in <= {GOAL_SECONDS:.0f} s: {verdict} "
        f"({first:.1f} s{'' if rows == GOAL_ROWS else ', scaled from the rows run'})"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=GOAL_ROWS)
    parser.add_argument(
        "--nik-share", type=float, default=0.2, help="share of rows whose NPWP is a NIK"
    )
    parser.add_argument("--seed", type=int, default=20_251_122)
    parser.add_argument("--workdir", help="where the files go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ptsp-import-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    csv_path = workdir / "snapshot.csv"
    gz_path = workdir / "snapshot.csv.gz"
    try:
        t = time.perf_counter()
        generate(csv_path, args.rows, args.nik_share, args.seed)
        gzip_copy(csv_path, gz_path)
        print(
            f"generated {args.rows:,} rows in {time.perf_counter() - t:.1f} s: "
            f"{csv_path.stat().st_size / 1e6:.0f} MB CSV, {gz_path.stat().st_size / 1e6:.0f} MB gz",
            file=sys.stderr,
        )
        figures = asyncio.run(measure(workdir, csv_path, gz_path))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    result = {
        "rows": args.rows,
        "nik_share": args.nik_share,
        "cpus": os.cpu_count(),
        **figures,
    }
    sys.stdout.write(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
