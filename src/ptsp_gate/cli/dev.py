"""`ptsp-gate dev`: the whole system on one machine, with a demo feed and a printed summary.

The services and the officer console run as separate processes (`ptsp-gate run ...`), exactly as
in production, against the embedded broker and PostgreSQL unless KAFKA_BOOTSTRAP_SERVERS /
DATABASE_URL point elsewhere.
The session itself (`dev_session.py`) is imported only when the command runs: it needs the
development extra, and every other command starts faster without it.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ptsp_gate.cli.common import PORT, require_dev_extra
from ptsp_gate.config import Settings

if TYPE_CHECKING:
    from ptsp_gate.cli.common import Subcommands


def add_parser(sub: Subcommands) -> None:
    parser = sub.add_parser("dev", help="run the whole system locally with a demo feed")
    parser.set_defaults(handler=run)
    parser.add_argument(
        "--exit-after-demo",
        action="store_true",
        help="stop once the demo's decisions are in (for scripts and CI)",
    )
    parser.add_argument("--permit-checker-port", type=PORT, default=9101)
    parser.add_argument("--enrolment-sync-port", type=PORT, default=9102)
    parser.add_argument("--officer-console-port", type=PORT, default=9103)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    # Both up front, so that a missing engine is said before the other one has started.
    if not settings.kafka_bootstrap_servers:
        require_dev_extra(
            "confluent_kafka", "the embedded Kafka", otherwise="KAFKA_BOOTSTRAP_SERVERS"
        )
    if not settings.database_url:
        require_dev_extra("pgserver", "the embedded PostgreSQL", otherwise="DATABASE_URL")
    from ptsp_gate.cli.dev_session import run_dev

    return await run_dev(args, settings)
