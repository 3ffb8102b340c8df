"""`ptsp-gate`: the console script. Argument errors and expected failures end with a one-line
message on stderr and a non-zero exit (2 for usage, 1 for everything else)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from ptsp_gate import __version__
from ptsp_gate.cli import (
    accounts,
    broker,
    coverage,
    dev,
    dlq,
    enrolment,
    migrate,
    officer,
    outbox,
    policy,
    projection,
    run,
)
from ptsp_gate.cli.common import CommandError, Handler, Parser, one_line, subcommands
from ptsp_gate.config import Settings

# In the order `ptsp-gate --help` lists them.
GROUPS = (
    dev,
    run,
    migrate,
    broker,
    officer,
    coverage,
    accounts,
    projection,
    enrolment,
    policy,
    dlq,
    outbox,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ptsp-gate",
        description="BPJS Ketenagakerjaan compliance gate for business permits (PTSP / OSS).",
    )
    parser.add_argument("--version", action="version", version=f"ptsp-gate {__version__}")
    sub = subcommands(parser, "command")
    for group in GROUPS:
        group.add_parser(sub)
    return parser


def _setting_name(field: str) -> str:
    """The environment variable behind a setting, as the operator wrote it."""
    if field.upper() in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "DATABASE_URL_FILE"):
        return field.upper()
    return "PTSP_GATE_" + field.upper()


def _infrastructure_error(exc: BaseException) -> str | None:
    import asyncpg
    from aiokafka.errors import KafkaError

    text = one_line(exc)[:300]
    # Looked up, not imported: the embedded engines (dev extra only) raise these, so they exist
    # only once a command has loaded them.
    engines = sys.modules.get("ptsp_gate.embedded")
    if engines is not None and isinstance(exc, (engines.ApacheKafkaError, engines.MockKafkaError)):
        return text
    if isinstance(exc, (asyncpg.PostgresError, asyncpg.InterfaceError)):
        return f"PostgreSQL: {type(exc).__name__}: {text}"
    if isinstance(exc, KafkaError):
        return f"Kafka: {type(exc).__name__}: {text}"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or text}"
    return None


async def _carry_out(args: argparse.Namespace) -> int:
    handler: Handler = args.handler  # set by the command group's parser
    # Read here, inside the error handling below, so that a bad setting is one line too.
    return await handler(args, Settings())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_carry_out(args)) or 0
    except BrokenPipeError:
        # `ptsp-gate flagged | head` closing early is not an error. Caught first: it is an
        # OSError, which the clause for infrastructure errors below would report.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
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


if __name__ == "__main__":
    raise SystemExit(main())
