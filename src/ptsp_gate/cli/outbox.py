"""`ptsp-gate outbox parked | retry`: the outbox rows the broker refused for good, and putting
them back once the cause is fixed (a topic's size limit raised, an ACL granted).

`parked` shows what each row is and why it was refused, never its bytes: a decision names an
employer and a dead letter holds whatever its producer sent.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ptsp_gate.cli.common import CommandError, bounded, on_database, subcommands
from ptsp_gate.config import Settings
from ptsp_gate.reports import render

if TYPE_CHECKING:
    from ptsp_gate.cli.common import Subcommands

PARKED_COLUMNS = ("id", "kind", "topic", "bytes", "created_at", "parked_at", "error")


def add_parser(sub: Subcommands) -> None:
    parser = sub.add_parser(
        "outbox",
        help="outbox rows Kafka refused for good: list them, queue them again",
        description="Outbox rows (decisions, dead letters) that Kafka refused for a reason no\n"
        "retry changes (too large, invalid topic, not authorised) are parked so the rows behind\n"
        "them are published. List them, fix the cause, then queue them again.",
        epilog="exit codes:\n  0  done\n  1  an error: PostgreSQL unreachable, an unknown id "
        "(nothing is queued then)\n  2  usage: bad arguments",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=run)
    actions = subcommands(parser, "action")
    listing = actions.add_parser("parked", help="the parked rows, oldest first; never content")
    listing.add_argument("--format", choices=("table", "csv", "json"), default="table")
    requeue = actions.add_parser(
        "retry", help="put parked rows back at the end of the outbox, to be published again"
    )
    requeue.add_argument(
        "ids", nargs="*", type=bounded(1, 2**63 - 1), metavar="ID", help="as `outbox parked` lists"
    )
    requeue.add_argument("--all", action="store_true", help="every parked row")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    return await on_database(settings, lambda conn: _carry_out(args, conn))


def render_parked(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return render.to_json(rows) + "\n"
    if fmt == "csv":
        return render.to_csv(rows, PARKED_COLUMNS)
    if not rows:
        return "no parked outbox rows\n"
    return render.to_table(rows, PARKED_COLUMNS)


async def retry(conn: Any, args: argparse.Namespace) -> int:
    from ptsp_gate.stores import outbox

    if not args.all and not args.ids:
        raise CommandError(
            "name the parked rows to retry (IDs as `outbox parked` lists them) or --all"
        )
    if args.all and args.ids:
        raise CommandError("give IDs or --all, not both")
    async with conn.transaction():
        if args.ids:
            # All or none: a mistyped id moves nothing.
            missing = sorted(set(args.ids) - await outbox.lock_parked(conn, args.ids))
            if missing:
                raise CommandError(
                    f"no parked outbox row with id {', '.join(map(str, missing[:20]))}; "
                    "nothing was queued"
                )
        moved = await outbox.retry_parked(conn, None if args.all else args.ids)
    for row_id in moved:
        print(f"outbox row {row_id} queued again")
    if not moved:
        print("no parked outbox rows")
    return 0


async def _carry_out(args: argparse.Namespace, conn: Any) -> int:
    if args.action == "parked":
        from ptsp_gate.stores import outbox

        sys.stdout.write(render_parked(await outbox.parked(conn), args.format))
        return 0
    return await retry(conn, args)
