"""PostgreSQL connection handling shared by both services."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

# Errors after which the same work may succeed later: the server went away, restarted, refused
# connections, or killed our backend (pg_terminate_backend raises AdminShutdownError).
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    # The database's state, not the record's: a statement or lock timeout behind someone else's
    # lock, a replica made read-only by a failover, a full disk, memory, an I/O error. Were
    # these taken for a poison record, every record of a batch would be dead-lettered while
    # `SELECT 1` still answers.
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.LockNotAvailableError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.PostgresSystemError,
    TimeoutError,
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _no_reset(conn: asyncpg.Connection) -> None:
    return None


async def create_pool(dsn: str, size: int = 4, **kwargs: Any) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=size,
        init=_init_connection,
        # Pool connections hold no session state (locks and LISTEN live on dedicated
        # connections), so the reset round trip on every release buys nothing.
        reset=_no_reset,
        command_timeout=60,
        **kwargs,
    )
    assert pool is not None
    return pool


async def connect(dsn: str, application_name: str | None = None) -> asyncpg.Connection:
    """A connection; `application_name` is what pg_stat_activity shows a DBA for it."""
    settings = {"application_name": application_name} if application_name else None
    conn = await asyncpg.connect(dsn, server_settings=settings)
    await _init_connection(conn)
    return conn
