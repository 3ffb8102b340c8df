"""`ptsp-gate outbox parked | retry`: the outbox rows the broker refused for good, and putting
them back once the cause is fixed (a topic's size limit raised, an ACL granted).

`parked` shows what each row is and why it was refused, never its bytes: a decision names an
employer and a dead letter holds whatever its producer sent.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ptsp_gate.cli.errors import CommandError
from ptsp_gate.reports import render

PARKED_COLUMNS = ("id", "kind", "topic", "bytes", "created_at", "parked_at", "error")


async def parked(conn: Any) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT id, kind, topic,"
        " coalesce(length(key), 0) + length(headers) + coalesce(length(value), 0) AS bytes,"
        " created_at, parked_at, error FROM outbox_parked ORDER BY id"
    )
    return [dict(r) for r in rows]


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
            found = await conn.fetch(
                "SELECT id FROM outbox_parked WHERE id = ANY($1::bigint[]) FOR UPDATE", args.ids
            )
            missing = sorted(set(args.ids) - {r["id"] for r in found})
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


async def run(args: argparse.Namespace, conn: Any) -> int:
    if args.action == "parked":
        sys.stdout.write(render_parked(await parked(conn), args.format))
        return 0
    return await retry(conn, args)
