"""`ptsp-gate flagged` and `ptsp-gate employer`: what a licensing officer asks of the stored
decisions. Read only."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ptsp_gate.cli.common import NIB, REGION, on_database
from ptsp_gate.config import Settings
from ptsp_gate.contract.events import ReasonCode

if TYPE_CHECKING:
    from ptsp_gate.cli.common import Subcommands


def add_parser(sub: Subcommands) -> None:
    parser = sub.add_parser("flagged", help="employers whose latest decision is BLOCKED")
    parser.set_defaults(handler=flagged)
    parser.add_argument("--region", type=REGION)
    parser.add_argument("--reason", choices=[c.value for c in ReasonCode], metavar="CODE")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")

    parser = sub.add_parser("employer", help="one employer's enrolment state and decisions")
    parser.set_defaults(handler=employer)
    parser.add_argument("nib", type=NIB, metavar="NIB")
    parser.add_argument("--format", choices=("table", "json"), default="table")


async def flagged(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.reports import render
    from ptsp_gate.stores import officer_queries as queries

    rows = await on_database(
        settings, lambda conn: queries.flagged(conn, region=args.region, reason=args.reason)
    )
    sys.stdout.write(render.flagged(rows, args.format))
    return 0


async def employer(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.reports import render
    from ptsp_gate.stores import officer_queries as queries

    report = await on_database(settings, lambda conn: queries.employer(conn, args.nib))
    sys.stdout.write(render.employer(report, args.format))
    # Nothing known about the NIB is not an error, but scripts can tell it apart.
    return 3 if report["enrolment"] is None and not report["decisions"] else 0
