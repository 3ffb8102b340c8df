"""`ptsp-gate flagged` and `ptsp-gate employer`: what a licensing officer asks of the compliance
projection. Read only."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ptsp_gate.cli.common import (
    NIB,
    REGION,
    CommandError,
    add_output_arguments,
    bounded,
    checked_output,
    on_database,
)
from ptsp_gate.config import Settings
from ptsp_gate.contract.events import ReasonCode
from ptsp_gate.reports.export import FORMATS

if TYPE_CHECKING:
    from ptsp_gate.cli.common import Subcommands

_EXIT_CODES = (
    "exit codes:\n  0  done\n  1  an error: PostgreSQL unreachable, a query over "
    "PTSP_GATE_STATEMENT_TIMEOUT_S, a cursor this program did not print\n  2  usage: bad arguments"
)


def _npwp(value: str) -> str:
    if value == "-":
        return value  # read from standard input, so that it stays out of `ps` and shell history
    if not re.fullmatch(r"[0-9]{15}|[0-9]{16}", value):
        # The value itself is not echoed: it may be a person's tax number.
        raise argparse.ArgumentTypeError("is not a 15- or 16-digit NPWP")
    return value


def _npwp_from_stdin() -> str:
    line = sys.stdin.readline(100).strip()
    try:
        return _npwp(line) if line != "-" else _npwp("")
    except argparse.ArgumentTypeError:
        raise CommandError("standard input holds no 15- or 16-digit NPWP") from None


def _name(value: str) -> str:
    text = " ".join(value.split())
    if not 3 <= len(text) <= 100:
        raise argparse.ArgumentTypeError("give 3 to 100 characters of the employer's name")
    return text


def add_parser(sub: Subcommands) -> None:
    parser = sub.add_parser(
        "flagged",
        help="employers whose latest decision is BLOCKED",
        description="Employers whose latest decision is BLOCKED, by region, then by when they "
        "were first flagged.\nWithout --limit, every one is written as it is read (any number, "
        "in constant memory).\nWith --limit, one page; the command to read the next one is "
        "printed on stderr.",
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=flagged)
    parser.add_argument("--region", type=REGION)
    parser.add_argument("--reason", choices=[c.value for c in ReasonCode], metavar="CODE")
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument("--limit", type=bounded(1, 10_000), help="one page of this many")
    parser.add_argument("--after", metavar="CURSOR", help="start after this page's end")
    add_output_arguments(parser)

    parser = sub.add_parser(
        "employer",
        help="one employer's enrolment state, standing and decisions; or find it by NPWP or name",
        epilog=_EXIT_CODES.replace(
            "  2  usage",
            "  3  no employer known by that NIB or NPWP, or no name matches\n  2  usage",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=employer)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("nib", nargs="?", type=NIB, metavar="NIB")
    which.add_argument(
        "--npwp",
        type=_npwp,
        help="the employers that used this NPWP (15 or 16 digits, either form); "
        "`-` reads it from standard input",
    )
    which.add_argument("--name", type=_name, help="employers whose name contains this (any case)")
    parser.add_argument("--format", choices=("table", "json"), default="table")


async def flagged(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.reports import export, render
    from ptsp_gate.reports.flagged_export import sheet_name
    from ptsp_gate.stores import officer_queries as queries

    output = checked_output(args)
    try:
        after = queries.FlaggedCursor.decode(args.after) if args.after else None
    except queries.BadCursor as exc:
        raise CommandError(f"--after: {exc}") from None
    filters: dict[str, Any] = {"region": args.region, "reason": args.reason, "after": after}
    following: list[queries.FlaggedCursor] = []

    async def page(conn: Any) -> AsyncIterator[list[dict[str, Any]]]:
        rows, cursor = await queries.flagged_page(conn, limit=args.limit, **filters)
        following.extend([cursor] if cursor else [])
        yield rows

    async def write(conn: Any) -> int:
        if not args.limit:
            from ptsp_gate.reports.flagged_export import export_flagged

            return await export_flagged(
                conn, fmt=args.format, language=args.labels, output=output, **filters
            )
        return await export.write(
            page(conn),
            fmt=args.format,
            columns=render.FLAGGED_COLUMNS,
            language=args.labels,
            output=output,
            sheet=sheet_name(args.labels),
            noun="flagged employer",
        )

    written = await on_database(settings, write)
    if following:
        # On stderr, so that standard output holds only the page's data.
        print(f"next page: the same command with --after {following[0].encode()}", file=sys.stderr)
    if output is not None:
        print(f"{written} flagged employer(s) written to {output}", file=sys.stderr)
    return 0


async def employer(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.reports import render
    from ptsp_gate.stores import officer_queries as queries

    if args.npwp == "-":
        args.npwp = _npwp_from_stdin()
    if args.nib is None:
        found = await on_database(
            settings,
            lambda conn: (
                queries.by_npwp(conn, args.npwp) if args.npwp else queries.by_name(conn, args.name)
            ),
        )
        if args.npwp and len(found) == 1:
            args.nib = found[0]["nib"]
        else:
            sys.stdout.write(render.matches(found, args.format))
            return 0 if found else 3
    report = await on_database(settings, lambda conn: queries.employer(conn, args.nib))
    sys.stdout.write(render.employer(report, args.format))
    # Nothing known about the NIB is not an error, but scripts can tell it apart.
    return 3 if report["enrolment"] is None and not report["decisions"] else 0
