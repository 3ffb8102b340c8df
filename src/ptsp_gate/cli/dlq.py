"""`ptsp-gate dlq list | replay`: see what was dead-lettered, and re-publish records to their
source topic once the cause is fixed (`dlq_list`, `dlq_replay`).

Both read the dead-letter topics without a consumer group (see `ptsp_gate.dlq.reader`), so they
never move a service's offsets. `replay` checks every selected record before publishing any; it
records each replay in PostgreSQL (`dlq_replay`) before publishing and after the broker's
acknowledgement, so replaying a record again publishes nothing, and a run interrupted between the
two is completed by the next run that selects the record.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ptsp_gate.cli import dlq_list, dlq_replay
from ptsp_gate.cli.common import DATE, CommandError, bounded, subcommands
from ptsp_gate.cli.dlq_common import UsageError
from ptsp_gate.config import Settings

if TYPE_CHECKING:
    from ptsp_gate.cli.common import Subcommands

_EXITS = """exit codes:
  0  done; also when nothing matched, or every selected record was replayed before
  1  an error: Kafka or PostgreSQL unreachable, an address with no record, a record that
     cannot be replayed (nothing is published then), a publish not acknowledged
  2  usage: bad arguments, or a topic this configuration does not know
"""


def add_parser(sub: Subcommands) -> None:
    from ptsp_gate.contract.dead_letter import ERROR_CODES
    from ptsp_gate.dlq.records import AddressRange, offset_range

    def address(value: str) -> AddressRange:
        try:
            return AddressRange.parse(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    def offsets(value: str) -> tuple[int, int]:
        try:
            return offset_range(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    topic_help = "a source topic or its dead-letter topic (default: every dead-letter topic)"
    error_help = f"only records with this error code: {', '.join(ERROR_CODES)}"
    timeout_help = "give up when Kafka or PostgreSQL does not answer for this long (default 15)"
    parser = sub.add_parser(
        "dlq",
        help="list dead-lettered records and replay them to their source topic",
        description="Dead-lettered records: list them, and replay them to their source topic\n"
        "once the cause is fixed. The dead-letter topics are read without a consumer group.",
        epilog=_EXITS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=run)
    actions = subcommands(parser, "action")
    listing = actions.add_parser(
        "list",
        help="the dead-lettered records, oldest first",
        epilog=_EXITS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listing.add_argument("--topic", metavar="TOPIC", help=topic_help)
    listing.add_argument("--error", choices=ERROR_CODES, metavar="CODE", help=error_help)
    listing.add_argument(
        "--since", type=DATE, metavar="DATE", help="only records dead-lettered on or after"
    )
    listing.add_argument("--limit", type=bounded(1, 1_000_000), metavar="N", help="the oldest N")
    listing.add_argument("--format", choices=("table", "csv", "json"), default="table")
    listing.add_argument(
        "--timeout", type=bounded(1, 600), default=15, metavar="SECONDS", help=timeout_help
    )
    replay = actions.add_parser(
        "replay",
        help="re-publish dead-lettered records to their source topic, once each",
        description="Re-publish records to the topic they were dead-lettered from: the original\n"
        "key, value and headers, plus ptsp-gate-replayed-from. Every selected record is checked\n"
        "before any is published; a record replayed before is not published again.",
        epilog="records:\n"
        "  ADDRESS                    as `dlq list` shows it: TOPIC/PARTITION/OFFSET, or\n"
        "                             TOPIC/PARTITION/FIRST-LAST for a range\n"
        "  --topic T --partition P --offset O[-LAST]   the same; --offset repeatable\n"
        "  --error CODE, --all        by filter; --topic and --since narrow\n\n" + _EXITS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_argument("addresses", nargs="*", type=address, metavar="ADDRESS")
    replay.add_argument("--topic", metavar="TOPIC", help=topic_help)
    replay.add_argument("--partition", type=bounded(0, 2**31 - 1), metavar="P")
    replay.add_argument("--offset", type=offsets, action="append", metavar="O[-LAST]")
    replay.add_argument("--error", choices=ERROR_CODES, metavar="CODE", help=error_help)
    replay.add_argument("--all", action="store_true", help="every record of --topic (or of all)")
    replay.add_argument(
        "--since", type=DATE, metavar="DATE", help="only records dead-lettered on or after"
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="say what would be published; publish nothing"
    )
    replay.add_argument(
        "--timeout", type=bounded(1, 600), default=15, metavar="SECONDS", help=timeout_help
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.dlq.reader import KafkaUnavailable, NoSuchRecord, quiet_client_logs

    quiet_client_logs()
    try:
        if args.action == "list":
            return await dlq_list.list_records(args, settings)
        return await dlq_replay.replay(args, settings)
    except UsageError as exc:
        print(f"ptsp-gate dlq: {exc} (see --help)", file=sys.stderr)
        return 2
    except (KafkaUnavailable, NoSuchRecord) as exc:
        raise CommandError(str(exc)) from exc
