"""PostgreSQL for a run: a server (``DATABASE_URL``'s or an embedded one) and fresh databases in it,
migrated or cloned from a migrated template."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from ptsp_gate.adapters import migrations
from ptsp_gate.adapters.postgres import connect
from ptsp_gate.embedded.postgres import EmbeddedPostgres

__all__ = [
    "create_database",
    "database_name",
    "drop_database",
    "fresh_database",
    "migrated_template",
    "postgres_server",
    "with_database",
]


@contextlib.contextmanager
def postgres_server(data_dir: Path) -> Iterator[tuple[str, str]]:
    """(DSN, what it is): the server of ``DATABASE_URL`` when set, else an embedded one with its
    data in ``data_dir``, stopped on the way out."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"], "DATABASE_URL"
        return
    with EmbeddedPostgres(data_dir) as pg:
        yield pg.dsn, "embedded"


def database_name(dsn: str) -> str:
    """The name of the database ``dsn`` connects to."""
    return urlsplit(dsn).path.lstrip("/")


def with_database(dsn: str, name: str) -> str:
    """The same server and credentials, another database name (URL or unix-socket form)."""
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


async def create_database(
    server_dsn: str, prefix: str, *, template: str | None = None, migrate: bool = False
) -> str:
    """A new database ``<prefix>_<random>`` on the server (a copy of ``template`` if given,
    migrated if asked); returns its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    clone = f' TEMPLATE "{template}"' if template else ""
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"{clone}')
    finally:
        await admin.close()
    dsn = with_database(server_dsn, name)
    if migrate:
        conn = await connect(dsn)
        try:
            await migrations.migrate(conn)
        finally:
            await conn.close()
    return dsn


async def drop_database(server_dsn: str, dsn: str) -> None:
    """Drop the database ``dsn`` names, whoever is still connected to it."""
    name = database_name(dsn)
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def migrated_template(server_dsn: str) -> str:
    """The name of a new migrated database to clone with ``create_database(template=...)``:
    copying one is much faster than migrating each."""
    dsn = await create_database(server_dsn, "ptsp_gate_template", migrate=True)
    return database_name(dsn)


@contextlib.asynccontextmanager
async def fresh_database(
    server_dsn: str, prefix: str, *, template: str | None = None, migrate: bool = False
) -> AsyncIterator[str]:
    """:func:`create_database`, dropped again on the way out."""
    dsn = await create_database(server_dsn, prefix, template=template, migrate=migrate)
    try:
        yield dsn
    finally:
        await drop_database(server_dsn, dsn)
