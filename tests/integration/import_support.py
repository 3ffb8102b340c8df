"""Snapshot files and import runs for the bulk import's integration tests."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from ptsp_gate import demo
from ptsp_gate.config import Settings
from ptsp_gate.contract.events import EnrolmentState, EnrolmentStatus, PdsFlag, Program, Segment
from ptsp_gate.enrolment_import import FIELDS, ImportResult, import_snapshot
from ptsp_gate.policy import load_policy_book
from ptsp_gate.redecide import Redecider

AS_OF = datetime(2025, 6, 30, 8, 0, tzinfo=UTC)


def record(n: int, version: int = 1, **changes: Any) -> dict[str, str]:
    """One CSV row (all cells text) for employer n."""
    row = {
        "nib": demo.nib(n),
        "npwp": demo.npwp15(n),
        "npp": f"NPP{n:08d}",
        "status": "ACTIVE",
        "segment": "PU",
        "programs": "JKK|JKM",
        "workers_enrolled": "3",
        "arrears_months": "0",
        "pds_flags": "",
        "sanction_requested": "false",
        "as_of": "2025-06-30T15:00:00+07:00",
        "version": str(version),
    }
    row.update({k: str(v) for k, v in changes.items()})
    return row


def csv_text(rows: list[dict[str, str]], header: tuple[str, ...] = FIELDS) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        writer.writerow([r[f] for f in header])
    return out.getvalue()


def write(path: Path, rows: list[dict[str, str]], *, gz: bool = False, **kw: Any) -> Path:
    data = csv_text(rows, **kw).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def redecider(settings: Settings | None = None) -> Redecider:
    s = settings or Settings()
    return Redecider(
        policies=load_policy_book(s.policy_dir),
        window_days=s.redecide_window_days,
        decisions_topic=s.topic_decisions,
        event_source=s.event_source,
    )


async def run_import(
    db: asyncpg.Connection, path: Path, settings: Settings | None = None, **kw: Any
) -> ImportResult:
    kw.setdefault("rejects_file", path.with_name(path.name + ".rejects.csv"))
    return await import_snapshot(db, path, redecider=redecider(settings), **kw)


def cli(dsn: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ptsp_gate.cli.main", "enrolment", "import", *argv],
        env={**os.environ, "DATABASE_URL": dsn},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def acli(dsn: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, dsn, *argv)


async def stored(db: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    rows = await db.fetch("SELECT * FROM employer_enrolment ORDER BY nib")
    return {r["nib"]: r for r in rows}


async def everything(db: asyncpg.Connection) -> tuple[Any, ...]:
    """What an import may change, to show that a failed one changed nothing."""
    return (
        [tuple(r) for r in await db.fetch("SELECT * FROM employer_enrolment ORDER BY nib")],
        [tuple(r) for r in await db.fetch("SELECT * FROM enrolment_import ORDER BY id")],
        [tuple(r) for r in await db.fetch("SELECT * FROM region_snapshot ORDER BY region_code")],
        await db.fetchval("SELECT count(*) FROM compliance_decision"),
        await db.fetchval("SELECT count(*) FROM outbox"),
    )


def state(n: int, version: int, npp: str = "STREAM", **changes: Any) -> EnrolmentState:
    values: dict[str, Any] = {
        "nib": demo.nib(n),
        "npwp": demo.npwp15(n),
        "npp": npp,
        "status": EnrolmentStatus.ACTIVE,
        "segment": Segment.PU,
        "programs": frozenset({Program.JKK, Program.JKM}),
        "workers_enrolled": 3,
        "arrears_months": 0,
        "pds_flags": frozenset[PdsFlag](),
        "sanction_requested": False,
        "as_of": AS_OF,
        "version": version,
    }
    values.update(changes)
    return EnrolmentState.model_construct(**values)
