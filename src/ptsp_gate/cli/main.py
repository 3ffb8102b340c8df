"""`ptsp-gate`: the console script. Argument errors and expected failures end with a one-line
message on stderr and a non-zero exit (2 for usage, 1 for everything else)."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NoReturn

from pydantic import ValidationError

from ptsp_gate import __version__
from ptsp_gate.cli.errors import CommandError, one_line
from ptsp_gate.contract.events import ReasonCode
from ptsp_gate.runtime.registry import installed


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _pattern(regex: str, what: str) -> type:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise argparse.ArgumentTypeError(f"{value!r} is not {what}")
        return value

    check.__name__ = what
    return check  # type: ignore[return-value]


def _bounded(low: int, high: int) -> type:
    def check(value: str) -> int:
        # ASCII digits only: int() would also take " 80", "8_0" or "٨٠".
        if not re.fullmatch(r"-?[0-9]+", value):
            raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a whole number")
        if len(value) > 18 or not low <= int(value) <= high:
            shown = value if len(value) <= 40 else value[:37] + "..."
            raise argparse.ArgumentTypeError(f"{shown} is not between {low} and {high}")
        return int(value)

    return check  # type: ignore[return-value]


REGION = _pattern(r"[0-9]{4}", "a 4-digit region code")
NIB = _pattern(r"[0-9]{13}", "a 13-digit NIB")
PORT = _bounded(1, 65535)


def DATE(value: str) -> datetime:
    """An ISO date or date-time; a date means its start, and a missing offset means UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO date (YYYY-MM-DD)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ptsp-gate",
        description="BPJS Ketenagakerjaan compliance gate for business permits (PTSP / OSS).",
    )
    parser.add_argument("--version", action="version", version=f"ptsp-gate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    dev = sub.add_parser("dev", help="run the whole system locally with a demo feed")
    dev.add_argument(
        "--exit-after-demo",
        action="store_true",
        help="stop once the demo's decisions are in (for scripts and CI)",
    )
    dev.add_argument("--permit-checker-port", type=PORT, default=9101)
    dev.add_argument("--enrolment-sync-port", type=PORT, default=9102)

    run = sub.add_parser("run", help="run one service")
    run_sub = run.add_subparsers(dest="service", required=True, parser_class=_Parser)
    for name, entry in installed().items():
        svc = run_sub.add_parser(name, help=f"run the {name} service")
        svc.add_argument(
            "--port",
            type=PORT,
            default=entry.default_port,
            help="HTTP port for /metrics, /health, /ready",
        )
        svc.add_argument("--host", default="0.0.0.0", help="HTTP bind address")
        svc.add_argument(
            "--workers",
            type=_bounded(1, 64),
            default=1,
            help="worker processes sharing the port, each a consumer in the group "
            "(more than the topic's partitions leaves some idle)",
        )

    sub.add_parser("migrate", help="apply database migrations (idempotent, concurrency-safe)")

    broker = sub.add_parser("broker", help="a standalone local Kafka cluster")
    broker.add_argument(
        "--engine",
        choices=("mock", "kafka"),
        default="mock",
        help="mock: librdkafka's in-process mock cluster; kafka: Apache Kafka nodes (needs Java "
        "17+ and the Apache Kafka that scripts/setup installs)",
    )
    broker.add_argument("--brokers", type=_bounded(1, 9), default=3)
    broker.add_argument("--partitions", type=_bounded(1, 64), default=3)
    broker.add_argument("--bootstrap-file", help="also write the bootstrap address to this file")

    flagged = sub.add_parser("flagged", help="employers whose latest decision is BLOCKED")
    flagged.add_argument("--region", type=REGION)
    flagged.add_argument("--reason", choices=[c.value for c in ReasonCode], metavar="CODE")
    flagged.add_argument("--format", choices=("table", "csv", "json"), default="table")

    employer = sub.add_parser("employer", help="one employer's enrolment state and decisions")
    employer.add_argument("nib", type=NIB, metavar="NIB")
    employer.add_argument("--format", choices=("table", "json"), default="table")
    enrolment = sub.add_parser("enrolment", help="the enrolment projection: bulk snapshot import")
    enrolment_sub = enrolment.add_subparsers(dest="action", required=True, parser_class=_Parser)
    imp = enrolment_sub.add_parser(
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

    policy = sub.add_parser("policy", help="validate, show and try out policies")
    policy_sub = policy.add_subparsers(dest="action", required=True, parser_class=_Parser)
    check = policy_sub.add_parser("check", help="validate a policy file")
    check.add_argument("file", metavar="FILE")
    show = policy_sub.add_parser("show", help="the effective policy and its version")
    show.add_argument("--region", type=REGION)
    show.add_argument("--format", choices=("text", "json"), default="text")
    simulate = policy_sub.add_parser(
        "simulate", help="re-run stored applications under a candidate policy (changes nothing)"
    )
    simulate.add_argument("--policy", required=True, metavar="FILE", help="candidate policy file")
    simulate.add_argument("--region", type=REGION, help="only applications of this region")
    simulate.add_argument("--since", type=DATE, help="only applications submitted on or after")
    simulate.add_argument("--format", choices=("table", "csv", "json"), default="table")
    _add_dlq(sub)
    _add_outbox(sub)
    return parser


_DLQ_EXITS = """exit codes:
  0  done; also when nothing matched, or every selected record was replayed before
  1  an error: Kafka or PostgreSQL unreachable, an address with no record, a record that
     cannot be replayed (nothing is published then), a publish not acknowledged
  2  usage: bad arguments, or a topic this configuration does not know
"""


def _add_dlq(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    dlq = sub.add_parser(
        "dlq",
        help="list dead-lettered records and replay them to their source topic",
        description="Dead-lettered records: list them, and replay them to their source topic\n"
        "once the cause is fixed. The dead-letter topics are read without a consumer group.",
        epilog=_DLQ_EXITS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dlq_sub = dlq.add_subparsers(dest="action", required=True, parser_class=_Parser)
    listing = dlq_sub.add_parser(
        "list",
        help="the dead-lettered records, oldest first",
        epilog=_DLQ_EXITS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listing.add_argument("--topic", metavar="TOPIC", help=topic_help)
    listing.add_argument("--error", choices=ERROR_CODES, metavar="CODE", help=error_help)
    listing.add_argument(
        "--since", type=DATE, metavar="DATE", help="only records dead-lettered on or after"
    )
    listing.add_argument("--limit", type=_bounded(1, 1_000_000), metavar="N", help="the oldest N")
    listing.add_argument("--format", choices=("table", "csv", "json"), default="table")
    listing.add_argument(
        "--timeout", type=_bounded(1, 600), default=15, metavar="SECONDS", help=timeout_help
    )
    replay = dlq_sub.add_parser(
        "replay",
        help="re-publish dead-lettered records to their source topic, once each",
        description="Re-publish records to the topic they were dead-lettered from: the original\n"
        "key, value and headers, plus ptsp-gate-replayed-from. Every selected record is checked\n"
        "before any is published; a record replayed before is not published again.",
        epilog="records:\n"
        "  ADDRESS                    as `dlq list` shows it: TOPIC/PARTITION/OFFSET, or\n"
        "                             TOPIC/PARTITION/FIRST-LAST for a range\n"
        "  --topic T --partition P --offset O[-LAST]   the same; --offset repeatable\n"
        "  --error CODE, --all        by filter; --topic and --since narrow\n\n" + _DLQ_EXITS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_argument("addresses", nargs="*", type=address, metavar="ADDRESS")
    replay.add_argument("--topic", metavar="TOPIC", help=topic_help)
    replay.add_argument("--partition", type=_bounded(0, 2**31 - 1), metavar="P")
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
        "--timeout", type=_bounded(1, 600), default=15, metavar="SECONDS", help=timeout_help
    )


def _add_outbox(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    outbox = sub.add_parser(
        "outbox",
        help="outbox rows Kafka refused for good: list them, queue them again",
        description="Outbox rows (decisions, dead letters) that Kafka refused for a reason no\n"
        "retry changes (too large, invalid topic, not authorised) are parked so the rows behind\n"
        "them are published. List them, fix the cause, then queue them again.",
        epilog="exit codes:\n  0  done\n  1  an error: PostgreSQL unreachable, an unknown id "
        "(nothing is queued then)\n  2  usage: bad arguments",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    outbox_sub = outbox.add_subparsers(dest="action", required=True, parser_class=_Parser)
    parked = outbox_sub.add_parser("parked", help="the parked rows, oldest first; never content")
    parked.add_argument("--format", choices=("table", "csv", "json"), default="table")
    retry = outbox_sub.add_parser(
        "retry", help="put parked rows back at the end of the outbox, to be published again"
    )
    retry.add_argument(
        "ids", nargs="*", type=_bounded(1, 2**63 - 1), metavar="ID", help="as `outbox parked` lists"
    )
    retry.add_argument("--all", action="store_true", help="every parked row")


def _setting_name(field: str) -> str:
    """The environment variable behind a setting, as the operator wrote it."""
    if field.upper() in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "DATABASE_URL_FILE"):
        return field.upper()
    return "PTSP_GATE_" + field.upper()


def _infrastructure_error(exc: BaseException) -> str | None:
    import asyncpg
    from aiokafka.errors import KafkaError

    from ptsp_gate.embedded import ApacheKafkaError, MockKafkaError

    text = one_line(exc)[:300]
    if isinstance(exc, (ApacheKafkaError, MockKafkaError)):
        return text
    if isinstance(exc, (asyncpg.PostgresError, asyncpg.InterfaceError)):
        return f"PostgreSQL: {type(exc).__name__}: {text}"
    if isinstance(exc, KafkaError):
        return f"Kafka: {type(exc).__name__}: {text}"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or text}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ptsp_gate.cli import commands

    try:
        return asyncio.run(commands.dispatch(args)) or 0
    except CommandError as exc:
        print(f"ptsp-gate {args.command}: {one_line(exc)}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _setting_name(str(first["loc"][0])) if first["loc"] else ""
        message = " ".join(str(first["msg"]).removeprefix("Value error, ").split())
        print(
            f"ptsp-gate {args.command}: configuration{' ' + where if where else ''}: {message}",
            file=sys.stderr,
        )
        return 1
    except Exception as exc:
        # PostgreSQL, Kafka or a file failing under any command: one line, not a traceback.
        line = _infrastructure_error(exc)
        if line is None:
            raise
        print(f"ptsp-gate {args.command}: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `ptsp-gate flagged | head` closing early is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
