"""`ptsp-gate projection verify | rebuild`: the compliance projection officers query, compared with
its recomputation from the decision history, or replaced by it."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ptsp_gate.cli.common import on_database, subcommands
from ptsp_gate.config import Settings
from ptsp_gate.reports import render

if TYPE_CHECKING:
    from ptsp_gate.cli.common import Subcommands

COLUMNS = ("table", "rows_stored", "missing", "extra", "sample")


def add_parser(sub: Subcommands) -> None:
    parser = sub.add_parser(
        "projection",
        help="check the compliance projection against the decision history, or rebuild it",
        description="The compliance projection (each application's and employer's standing, "
        "and the flagged episodes)\nis kept current with every decision. `verify` recomputes it "
        "from the decision history and\nreports any difference; `rebuild` replaces it with the "
        "recomputation (writers wait meanwhile).",
        epilog="exit codes:\n  0  the projection equals its recomputation (verify), or was "
        "rebuilt\n  1  an error: PostgreSQL unreachable; rebuild waited 10 s for the tables "
        "(a long transaction holds them)\n  2  usage: bad arguments\n  3  differences found "
        "(verify): run `ptsp-gate projection rebuild`",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=run)
    actions = subcommands(parser, "action")
    check = actions.add_parser("verify", help="recompute and compare; changes nothing")
    check.add_argument("--format", choices=("table", "json"), default="table")
    actions.add_parser("rebuild", help="replace the projection with its recomputation")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.stores import compliance

    if args.action == "rebuild":
        await on_database(settings, compliance.rebuild, limited=False)
        print("projection rebuilt from the decision history")
        return 0

    async def verify(conn: Any) -> list[compliance.Difference]:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await compliance.verify(conn)

    found = await on_database(settings, verify, limited=False)
    rows = [
        {
            "table": d.table,
            "rows_stored": d.rows_stored,
            "missing": d.missing,
            "extra": d.extra,
            "sample": list(d.sample),
        }
        for d in found
    ]
    differs = any(d.missing or d.extra for d in found)
    if args.format == "json":
        sys.stdout.write(render.to_json({"equal": not differs, "tables": rows}) + "\n")
    else:
        sys.stdout.write(render.to_table(rows, COLUMNS))
        print(
            "\nthe projection differs from its recomputation: run `ptsp-gate projection rebuild`"
            if differs
            else "\nthe projection equals its recomputation from the decision history"
        )
    return 3 if differs else 0
