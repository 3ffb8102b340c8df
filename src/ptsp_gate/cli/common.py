"""What the command groups share: the parser class and argument types, the one-line error, the
database (configured or embedded), connections, and loading the policy book.

Kept out of `main`: `python -m ptsp_gate.cli.main` loads the entry module twice (as __main__ and by
name), and a class defined there, CommandError above all, would exist twice.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from ptsp_gate.config import Settings

if TYPE_CHECKING:
    from ptsp_gate.policy import PolicyBook

    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]

T = TypeVar("T")

# What a command group's parser sets as `handler`: the coroutine that carries the command out.
Handler = Callable[[argparse.Namespace, Settings], Awaitable[int]]

DEV_EXTRA = "pip install 'ptsp-gate[dev]'"


class CommandError(Exception):
    """An expected failure, reported in one line."""


def one_line(exc: BaseException) -> str:
    """An exception's text on one line (driver messages often span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


# --- parsing -------------------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def subcommands(parser: argparse.ArgumentParser, dest: str) -> Subcommands:
    return parser.add_subparsers(dest=dest, required=True, parser_class=Parser)


def _pattern(regex: str, what: str, echo: bool = True) -> type:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            # Not echoed where the value may be a person's number pasted in the wrong place.
            shown = f"{value[:40]!r}" if echo else "the value given"
            raise argparse.ArgumentTypeError(f"{shown} is not {what}")
        return value

    check.__name__ = what
    return check  # type: ignore[return-value]


def bounded(low: int, high: int) -> type:
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
NIB = _pattern(r"[0-9]{13}", "a 13-digit NIB", echo=False)
PORT = bounded(1, 65535)


def DATE(value: str) -> datetime:
    """An ISO date or date-time; a date means its start, and a missing offset means UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO date (YYYY-MM-DD)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- reports -------------------------------------------------------------------------------------


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """`--labels` and `--output`, for the commands whose reports people open in a spreadsheet."""
    from ptsp_gate.reports.labels import LANGUAGES

    parser.add_argument(
        "--labels",
        choices=LANGUAGES,
        default="fields",
        help="column headings: the field names (default, for scripts), Indonesian or English "
        "(table, csv and xlsx)",
    )
    parser.add_argument(
        "--output",
        metavar="FILE",
        type=Path,
        help="write to FILE (replaced whole, readable by you only) instead of standard output; "
        "required for xlsx",
    )


def checked_output(args: argparse.Namespace) -> Path | None:
    """The `--output` file, checked before any query runs: xlsx needs one, and its directory must
    exist."""
    output: Path | None = args.output
    if args.format == "xlsx" and output is None:
        raise CommandError("--format xlsx needs --output FILE.xlsx (a spreadsheet is not text)")
    if output is not None:
        if output.is_dir():
            raise CommandError(f"--output: {output} is a directory")
        if not output.parent.is_dir():
            raise CommandError(f"--output: no directory {output.parent}")
    return output


# --- the development engines ---------------------------------------------------------------------


def require_dev_extra(module: str, engine: str, otherwise: str = "") -> None:
    """Stop in one line when `engine` cannot run here: its `module` comes only with the dev extra,
    which production images do not carry. Looked up, not imported: only the engine loads it."""
    try:
        found = importlib.util.find_spec(module) is not None
    except ImportError:
        found = False
    if not found:
        hint = f"; or set {otherwise}" if otherwise else ""
        raise CommandError(f"{engine} needs {DEV_EXTRA} ({module} is not installed){hint}")


# --- PostgreSQL ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[str]:
    """The configured database, or the embedded one kept under the data directory."""
    if settings.database_url:
        yield settings.dsn()
        return
    require_dev_extra("pgserver", "the embedded PostgreSQL", otherwise="DATABASE_URL")
    from ptsp_gate.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres()
    try:
        dsn = pg.start(settings.data_dir / "pgdata")
    except Exception as exc:
        raise CommandError(f"cannot start the embedded PostgreSQL: {exc}") from exc
    try:
        yield dsn
    finally:
        pg.stop()


async def connect(dsn: str, timeout_s: float | None = None) -> Any:
    """A connection, or a one-line CommandError saying why there is none."""
    from ptsp_gate.adapters.postgres import connect as open_connection

    # A DBA looking at pg_stat_activity sees which command holds a connection.
    name = "ptsp-gate " + " ".join(a for a in sys.argv[1:2] if a.isidentifier())
    try:
        return await asyncio.wait_for(open_connection(dsn, name.strip()[:63]), timeout_s)
    except Exception as exc:
        if isinstance(exc, TimeoutError) and timeout_s is not None:
            raise CommandError(f"PostgreSQL did not answer within {timeout_s:g} s") from None
        raise CommandError(f"cannot connect to PostgreSQL: {one_line(exc)}") from exc


@contextlib.asynccontextmanager
async def migrated(
    dsn: str, timeout_s: float | None = None, statement_timeout_s: float | None = None
) -> AsyncIterator[Any]:
    """A connection to a database whose schema is current: the commands other than `migrate`
    never change the schema, and on an older one their queries would fail half-way.

    With `statement_timeout_s`, PostgreSQL cancels any query of the connection that runs longer,
    and the command ends with one line naming the setting. An interrupted command (Ctrl-C,
    SIGINT) cancels its running query on the server as it stops: asyncpg sends the cancel request
    when the awaiting task is cancelled, which is what asyncio.run does on SIGINT.
    """
    import asyncpg

    from ptsp_gate.adapters import migrations

    conn = await connect(dsn, timeout_s)
    try:
        if await migrations.pending(conn):
            raise CommandError("database schema is behind: run `ptsp-gate migrate`")
        if statement_timeout_s is not None:
            limit_ms = max(1, round(statement_timeout_s * 1000))
            await conn.execute(f"SET statement_timeout = {limit_ms}")
        try:
            yield conn
        except asyncpg.QueryCanceledError:
            # SQLSTATE 57014, whatever the server's language. An interrupted command never gets
            # here (its task is cancelled instead); an administrator's pg_cancel_backend would.
            if statement_timeout_s is None:
                raise
            raise CommandError(
                f"a query ran longer than PTSP_GATE_STATEMENT_TIMEOUT_S ({statement_timeout_s:g} s)"
                " and PostgreSQL cancelled it; narrow the question or raise the setting"
            ) from None
    finally:
        await conn.close()


async def on_database(
    settings: Settings, work: Callable[[Any], Awaitable[T]], *, limited: bool = True
) -> T:
    """`work` on a connection to the database (configured or embedded), its schema current, each
    query limited to the configured statement timeout unless `limited` is false (maintenance
    that reads the whole history, as `migrate` does)."""
    limit = settings.statement_timeout_s if limited else None
    async with database(settings) as dsn, migrated(dsn, statement_timeout_s=limit) as conn:
        return await work(conn)


# --- policies ------------------------------------------------------------------------------------


def checked_policy(load: Callable[[], T]) -> T:
    """`load()`, a policy file's error turned into one line."""
    from ptsp_gate.policy import PolicyError

    try:
        return load()
    except PolicyError as exc:
        raise CommandError(str(exc)) from exc


def policy_book(settings: Settings) -> PolicyBook:
    """The policies this installation runs: the policy directory's, or the packaged default."""
    from ptsp_gate.policy import load_policy_book

    return checked_policy(lambda: load_policy_book(settings.policy_dir))
