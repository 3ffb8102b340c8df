"""`ptsp-gate migrate`: bring the database schema up to date (idempotent, and safe to run from
several processes at once)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ptsp_gate.cli.common import CommandError, connect, database
from ptsp_gate.config import Settings

if TYPE_CHECKING:
    from ptsp_gate.cli.common import Subcommands


def add_parser(sub: Subcommands) -> None:
    parser = sub.add_parser(
        "migrate", help="apply database migrations (idempotent, concurrency-safe)"
    )
    parser.set_defaults(handler=migrate)


async def migrate(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.adapters import migrations

    async with database(settings) as dsn:
        conn = await connect(dsn)
        try:
            applied = await migrations.migrate(conn)
        except migrations.MigrationError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            await conn.close()
    print("applied: " + ", ".join(applied) if applied else "database schema is current")
    return 0
