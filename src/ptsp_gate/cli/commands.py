"""What each subcommand does. Kept apart from argument parsing so tests can call them directly."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from ptsp_gate.cli.errors import CommandError
from ptsp_gate.config import Settings

T = TypeVar("T")


async def dispatch(args: argparse.Namespace) -> int:
    settings = Settings()
    handler = {
        "dev": _dev,
        "run": _run,
        "migrate": _migrate,
        "broker": _broker,
        "flagged": _flagged,
        "employer": _employer,
        "enrolment": _enrolment,
        "policy": _policy,
        "dlq": _dlq,
        "outbox": _outbox,
    }[args.command]
    return await handler(args, settings)


@contextlib.asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[str]:
    """The configured database, or the embedded one kept under the data directory."""
    if settings.database_url:
        yield settings.dsn()
        return
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


async def _connect(dsn: str):  # type: ignore[no-untyped-def]
    from ptsp_gate.adapters.postgres import connect

    try:
        return await connect(dsn)
    except Exception as exc:
        raise CommandError(f"cannot connect to PostgreSQL: {exc}") from exc


async def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.adapters import migrations

    async with database(settings) as dsn:
        conn = await _connect(dsn)
        try:
            applied = await migrations.migrate(conn)
        except migrations.MigrationError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            await conn.close()
    print("applied: " + ", ".join(applied) if applied else "database schema is current")
    return 0


async def _read(settings: Settings, query: Callable[[Any], Awaitable[T]]) -> T:
    """Run a read-only officer query on a migrated database."""
    from ptsp_gate.adapters import migrations

    async with database(settings) as dsn:
        conn = await _connect(dsn)
        try:
            if await migrations.pending(conn):
                raise CommandError("database schema is behind: run `ptsp-gate migrate`")
            return await query(conn)
        finally:
            await conn.close()


async def _flagged(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.reports import queries, render

    rows = await _read(
        settings, lambda conn: queries.flagged(conn, region=args.region, reason=args.reason)
    )
    sys.stdout.write(render.flagged(rows, args.format))
    return 0


async def _employer(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.reports import queries, render

    report = await _read(settings, lambda conn: queries.employer(conn, args.nib))
    sys.stdout.write(render.employer(report, args.format))
    # Nothing known about the NIB is not an error, but scripts can tell it apart.
    return 3 if report["enrolment"] is None and not report["decisions"] else 0


async def _broker(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.embedded import run_broker

    topics = settings.all_topics()
    path = Path(args.bootstrap_file) if args.bootstrap_file else None
    # Blocks on the main thread on purpose: only the main thread receives SIGTERM/SIGINT.
    return run_broker(
        args.brokers,
        args.partitions,
        topics,
        path,
        engine=args.engine,
        compacted=[settings.topic_enrolment],
    )


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from ptsp_gate.observability.logging import configure
    from ptsp_gate.runtime.registry import spec_for
    from ptsp_gate.runtime.service import Service, StartupError

    missing = [
        n
        for n, v in (
            ("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers),
            ("DATABASE_URL", settings.database_url),
        )
        if not v
    ]
    if missing:
        raise CommandError(f"{' and '.join(missing)} must be set (or use `ptsp-gate dev`)")
    configure(settings.log_level, settings.log_format)
    try:
        service = Service(spec_for(args.service, settings, _policies(settings)), settings)
    except ValueError as exc:  # Kafka security settings that cannot work, said in one line
        raise CommandError(str(exc)) from exc
    try:
        await service.open()
    except StartupError as exc:
        raise CommandError(str(exc)) from exc
    if args.workers > 1:
        # The checks above ran once, here, so a bad setting is one line rather than N workers
        # failing; each worker then opens its own connections.
        await service.release()
        from ptsp_gate.runtime import supervisor

        try:
            return supervisor.serve(args.service, args.host, args.port, args.workers)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
    server = uvicorn.Server(
        uvicorn.Config(
            service.asgi_app(),
            host=args.host,
            port=args.port,
            log_config=None,
            lifespan="on",
            access_log=False,
        )
    )
    # uvicorn re-raises the signal it caught once shutdown completes; after a clean drain that
    # must not turn into death-by-signal, so the handler it restores is a no-op.
    signal.signal(signal.SIGTERM, lambda *_: None)
    await server.serve()
    if service.failed:
        raise CommandError(f"{args.service}: the Kafka consumer stopped (see the log above)")
    return 0 if server.started else 1


def _policies(settings: Settings):  # type: ignore[no-untyped-def]
    from ptsp_gate.policy import PolicyError, load_policy_book

    try:
        return load_policy_book(settings.policy_dir)
    except PolicyError as exc:
        raise CommandError(str(exc)) from exc


async def _enrolment(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.cli import enrolment

    return await enrolment.run(args, settings)


async def _policy(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.cli import policy

    return await policy.run(args, settings)


async def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.cli.dev import run_dev

    return await run_dev(args, settings)


async def _outbox(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.cli import outbox

    return await _read(settings, lambda conn: outbox.run(args, conn))


async def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.cli import dlq

    return await dlq.run(args, settings)
