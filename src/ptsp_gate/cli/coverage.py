"""`ptsp-gate coverage`: is coverage rising? Per region and month (or quarter): applications by
outcome, employers flagged, and of those how many were cleared within 30, 60 and 90 days, the
median days to clear, how many are still flagged, and the leading block reasons. Read only."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ptsp_gate.cli.common import (
    REGION,
    CommandError,
    add_output_arguments,
    checked_output,
    on_database,
)
from ptsp_gate.config import Settings
from ptsp_gate.reports.export import FORMATS

if TYPE_CHECKING:
    from ptsp_gate.cli.common import Subcommands

COLUMNS = (
    "region_code",
    "period",
    "applications_cleared",
    "applications_blocked",
    "applications_pending",
    "applications_rejected",
    "employers_flagged",
    "flag_episodes",
    "cleared_within_30d",
    "cleared_within_60d",
    "cleared_within_90d",
    "cleared",
    "median_days_to_clear",
    "ended_otherwise",
    "still_flagged",
    "expired",
    "top_reasons",
)


def _when(value: str) -> datetime:
    """An ISO date or date-time; without an offset it is read in --timezone (see _range)."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value[:40]!r} is not an ISO date (YYYY-MM-DD)"
        ) from None


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(f"{value[:60]!r} is not a time zone name") from None
    return value


def add_parser(sub: Subcommands) -> None:
    parser = sub.add_parser(
        "coverage",
        help="coverage impact per region and period: flagged employers, and how many cleared",
        description="Per region and month (or quarter): application events decided, by their "
        "first outcome;\nemployers flagged in the period; of those, how many were cleared "
        "within 30, 60 and 90 days,\nthe median days to clear, how many ended otherwise "
        "(PENDING), are still flagged, or expired\n(their blocked applications left the "
        "re-decision window); and the leading block reasons.\nPeriods are calendar months in "
        "--timezone. A period's clearances are counted up to now:\nrecent ones are still open.",
        epilog="exit codes:\n  0  done\n  1  an error: PostgreSQL unreachable, a query over "
        "PTSP_GATE_STATEMENT_TIMEOUT_S\n  2  usage: bad arguments",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=coverage)
    parser.add_argument("--region", type=REGION)
    parser.add_argument(
        "--from",
        dest="since",
        type=_when,
        help="first day (default: the start of the month 11 months before --to)",
    )
    parser.add_argument(
        "--to", dest="until", type=_when, help="the day after the last (default: now)"
    )
    parser.add_argument("--by", choices=("month", "quarter"), default="month")
    parser.add_argument(
        "--timezone",
        type=_zone,
        default="Asia/Jakarta",
        help="where months begin (default Asia/Jakarta, WIB; Asia/Makassar is WITA, "
        "Asia/Jayapura WIT)",
    )
    parser.add_argument("--format", choices=FORMATS, default="table")
    add_output_arguments(parser)


def period_label(period: datetime, by: str) -> str:
    return f"{period.year}-Q{(period.month - 1) // 3 + 1}" if by == "quarter" else f"{period:%Y-%m}"


def _range(args: argparse.Namespace, now: datetime) -> tuple[datetime, datetime]:
    zone = ZoneInfo(args.timezone)

    def local(value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=zone)

    until = local(args.until) if args.until else now
    if args.since is not None:
        since = local(args.since)
    else:
        last = until.astimezone(zone)
        month = last.year * 12 + last.month - 1 - 11
        since = datetime(month // 12, month % 12 + 1, 1, tzinfo=zone)
    if since >= until:
        raise CommandError("--from must come before --to")
    if until - since > timedelta(days=3660):
        raise CommandError("ask for ten years at most")
    return since, until


async def coverage(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.reports import export
    from ptsp_gate.stores import coverage as figures

    output = checked_output(args)
    now = datetime.now(UTC)
    since, until = _range(args, now)
    question = figures.Question(
        since=since,
        until=until,
        by=args.by,
        timezone=args.timezone,
        region=args.region,
        window_days=settings.redecide_window_days,
        now=now,
    )

    async def rows(conn: Any) -> AsyncIterator[list[dict[str, Any]]]:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            found = await figures.report(conn, question)
        yield [{**f.row(), "period": period_label(f.period, args.by)} for f in found]

    async def write(conn: Any) -> int:
        return await export.write(
            rows(conn),
            fmt=args.format,
            columns=COLUMNS,
            language=args.labels,
            output=output,
            sheet="Cakupan" if args.labels == "id" else "Coverage",
            noun="region and period",
        )

    written = await on_database(settings, write)
    if output is not None:
        print(f"{written} row(s) written to {output}", file=sys.stderr)
    return 0
