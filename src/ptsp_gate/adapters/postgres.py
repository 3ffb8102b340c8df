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


# Planned for the values each time, never from a plan cached for earlier ones: the statements
# take arrays of one row to a hundred thousand (a consumer batch, a national re-decision), and a
# generic plan, which cannot see an array's length, may join such sets by nested loops. Measured:
# 20,000 re-decisions in one statement took 8.6 s with generic plans, 3.9 s with custom ones.
# Set in the session rather than as a startup parameter, which a connection pooler may refuse.
async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.execute("SET plan_cache_mode = force_custom_plan")
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _no_reset(conn: asyncpg.Connection) -> None:
    return None


async def create_pool(dsn: str, size: int = 4, **kwargs: Any) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=size,
        init=_init_connection,
        # Pool connections hold no session state that one use could leave to the next (locks
        # and LISTEN live on dedicated connections; the settings are the same for every use),
        # so the reset round trip on every release buys nothing.
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
