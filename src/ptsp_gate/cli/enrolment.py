"""`ptsp-gate enrolment import`: load a BPJS TK snapshot file into the enrolment projection.

Progress goes to stderr (a bar on a terminal, a plain line every few seconds otherwise), the
summary to stdout. Exit 0 once the import has committed, rejected rows or not; 1 when nothing was
imported (a broken file, a database error, --complete with rejected rows).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ptsp_gate.cli.common import (
    REGION,
    CommandError,
    database,
    migrated,
    one_line,
    policy_book,
    subcommands,
)
from ptsp_gate.config import Settings

if TYPE_CHECKING:
    from ptsp_gate.cli.common import Subcommands
    from ptsp_gate.enrolment_import import ImportResult

# How many bad rows are listed on stderr; the rejects file has them all.
SHOWN_REJECTS = 10
_LINE_INTERVAL_S = 2.0
_BAR_INTERVAL_S = 0.1


def add_parser(sub: Subcommands) -> None:
    parser = sub.add_parser("enrolment", help="the enrolment projection: bulk snapshot import")
    parser.set_defaults(handler=run)
    actions = subcommands(parser, "action")
    imp = actions.add_parser(
        "import", help="load a BPJS TK snapshot (CSV, optionally gzip) into the projection"
    )
    imp.add_argument("file", metavar="FILE", help="CSV or CSV.gz, one employer per row")
    imp.add_argument("--region", type=REGION, help="the region the snapshot covers")
    imp.add_argument(
        "--complete",
        action="store_true",
        help="the snapshot lists every employer of --region (absent means not registered "
        "where the region's policy says so)",
    )
    imp.add_argument(
        "--rejects", metavar="FILE", help="where bad rows go (default: FILE.rejects.csv)"
    )
    imp.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="a bar on a terminal, periodic lines otherwise (auto)",
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "import":
        return await _import(args, settings)
    raise CommandError(f"unknown action {args.action!r}")


def default_rejects_path(file: Path) -> Path:
    return file.with_name(file.name + ".rejects.csv")


async def _import(args: argparse.Namespace, settings: Settings) -> int:
    import asyncpg

    from ptsp_gate import enrolment_import
    from ptsp_gate.redecide import Redecider

    file, rejects = _paths(args)
    redecider = Redecider(
        policies=policy_book(settings),
        window_days=settings.redecide_window_days,
        decisions_topic=settings.topic_decisions,
        event_source=settings.event_source,
    )
    progress = make_progress(args.progress, sys.stderr)
    try:
        async with database(settings) as dsn, migrated(dsn) as conn:
            result = await enrolment_import.import_snapshot(
                conn,
                file,
                redecider=redecider,
                rejects_file=rejects,
                region=args.region,
                complete=args.complete,
                progress=progress,
            )
    except enrolment_import.ImportFailed as exc:
        raise CommandError(f"{one_line(exc)}; nothing was imported") from exc
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise CommandError(f"database error: {one_line(exc)}; nothing was imported") from exc
    finally:
        progress.close()
    sys.stdout.write(summary(result))
    return 0


def _paths(args: argparse.Namespace) -> tuple[Path, Path]:
    if args.complete and not args.region:
        raise CommandError("--complete needs --region (the region the snapshot lists completely)")
    file = Path(args.file)
    if not file.is_file():
        raise CommandError(f"{file}: no such file")
    rejects = Path(args.rejects) if args.rejects else default_rejects_path(file)
    if not rejects.parent.is_dir():
        raise CommandError(f"--rejects: {rejects.parent} is not a directory")
    if rejects.exists() and rejects.samefile(file):
        raise CommandError("--rejects names the file being imported")
    return file, rejects


def summary(result: ImportResult) -> str:
    rate = result.rows_read / result.seconds if result.seconds > 0 else 0.0
    rows: list[tuple[str, str]] = [
        ("file", result.source_file),
        ("rows read", str(result.rows_read)),
        ("applied", str(result.rows_applied)),
        ("stale", str(result.rows_stale)),
        ("rejected", str(result.rows_rejected)),
    ]
    if result.rejects_file is not None:
        rows.append(("rejects file", str(result.rejects_file)))
    rows += [
        ("re-decisions", str(result.redecisions)),
        ("seconds", f"{result.seconds:.1f}"),
        ("rows/s", f"{rate:.0f}"),
    ]
    if result.region_code and result.complete_as_of is not None:
        as_of = result.complete_as_of.isoformat()
        rows.append(
            (
                "complete",
                f"region {result.region_code} as of {as_of}"
                if result.snapshot_recorded
                else f"region {result.region_code} kept as of {as_of} (a later snapshot)",
            )
        )
    width = max(len(k) for k, _ in rows) + 2
    return "".join(f"{k:<{width}}{v}\n" for k, v in rows)


class _Reporter:
    """Progress on stderr. `bar` redraws one line in place; `lines` prints a line every few
    seconds (logs, CI); `none` prints only the bad rows."""

    def __init__(self, mode: str, out: TextIO) -> None:
        self._mode = mode
        self._out = out
        self._start = time.monotonic()
        # Lines start after one interval, so a short import prints none; the bar starts at once.
        self._last = 0.0 if mode == "bar" else self._start
        self._shown = 0
        self._hidden = 0
        self._bar_drawn = False

    def reading(self, rows: int, done_bytes: int, total_bytes: int) -> None:
        if self._mode == "none":
            return
        now = time.monotonic()
        interval = _BAR_INTERVAL_S if self._mode == "bar" else _LINE_INTERVAL_S
        if now - self._last < interval:
            return
        self._last = now
        elapsed = now - self._start
        rate = rows / elapsed if elapsed > 0 else 0.0
        fraction = min(done_bytes / total_bytes, 1.0) if total_bytes else 0.0
        # The file's bytes (compressed ones for gzip) are the one measure known up front.
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
        eta_text = f"ETA {_duration(eta)}" if eta is not None else "ETA ?"
        text = f"{rows:,} rows  {rate:,.0f} rows/s  {fraction:4.0%}  {eta_text}"
        if self._mode == "bar":
            self._draw_bar(fraction, text)
        else:
            self._out.write(f"enrolment import: {text}\n")
            self._out.flush()

    def _draw_bar(self, fraction: float, text: str) -> None:
        columns = shutil.get_terminal_size((80, 24)).columns
        # A fixed width, so the bar does not jitter as the figures grow.
        width = 30 if columns - len(text) - 4 >= 30 else 10
        filled = int(width * fraction)
        line = f"[{'#' * filled}{'-' * (width - filled)}] {text}"
        self._out.write("\r" + line[: columns - 1] + "\x1b[K")
        self._out.flush()
        self._bar_drawn = True

    def rejected(self, line: int, reason: str) -> None:
        if self._shown >= SHOWN_REJECTS:
            self._hidden += 1
            return
        self._shown += 1
        self._clear_bar()
        self._out.write(f"line {line}: {reason}\n")
        self._out.flush()

    def merging(self, rows: int) -> None:
        text = f"file read; merging {rows:,} valid rows"
        if self._mode == "bar":
            self._out.write("\r" + text + "\x1b[K")
            self._out.flush()
            self._bar_drawn = True
        elif self._mode == "lines" and self._last > self._start:
            self._out.write(f"enrolment import: {text}\n")
            self._out.flush()

    def close(self) -> None:
        self._clear_bar()
        if self._hidden:
            self._out.write(f"... and {self._hidden} more bad row(s): see the rejects file\n")
            self._out.flush()
            self._hidden = 0

    def _clear_bar(self) -> None:
        if self._bar_drawn:
            self._out.write("\r\x1b[K")
            self._out.flush()
            self._bar_drawn = False


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def make_progress(mode: str, out: TextIO) -> _Reporter:
    if mode == "auto":
        mode = "bar" if _is_terminal(out) else "lines"
    return _Reporter(mode, out)


def _is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False
