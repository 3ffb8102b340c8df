"""The transactional outbox's table: rows written in the same transaction as the state they
announce, published later by the relay (`ptsp_gate.runtime.relay`), and the parked rows the broker
refused for good."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ptsp_gate.contract.cloudevents import Headers, pack_headers
from ptsp_gate.observability.metrics import Metrics

NOTIFY_CHANNEL = "ptsp_gate_outbox"
# Only the holder of this advisory lock publishes; others stand by and take over if it dies.
_RELAY_LOCK = 0x7074_7370_0002


@dataclass(frozen=True, slots=True)
class OutboxRow:
    topic: str
    key: bytes | None
    headers: Headers
    value: bytes | None
    kind: str  # "decision" | "dlq"


async def insert(conn: asyncpg.Connection, rows: Sequence[OutboxRow]) -> None:
    if not rows:
        return
    # The relay is woken in the same round trip; NOTIFY is delivered at commit.
    await conn.execute(
        "WITH ins AS (INSERT INTO outbox (topic, key, headers, value, kind)"
        " SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::bytea[], $5::text[])"
        " RETURNING 1)"
        " SELECT pg_notify($6, '') FROM (SELECT 1 FROM ins LIMIT 1) AS any_row",
        [r.topic for r in rows],
        [r.key for r in rows],
        [pack_headers(r.headers) for r in rows],
        [r.value for r in rows],
        [r.kind for r in rows],
        NOTIFY_CHANNEL,
    )


async def park(conn: asyncpg.Connection, reasons: dict[int, str]) -> None:
    """Move refused rows out of the outbox, in the caller's transaction."""
    await conn.execute(
        """
        WITH moved AS (DELETE FROM outbox WHERE id = ANY($1::bigint[]) RETURNING *)
        INSERT INTO outbox_parked (id, topic, key, headers, value, kind, created_at, error)
        SELECT m.id, m.topic, m.key, m.headers, m.value, m.kind, m.created_at, u.error
        FROM moved m JOIN unnest($1::bigint[], $2::text[]) AS u(id, error) ON u.id = m.id
        """,
        list(reasons),
        list(reasons.values()),
    )


async def retry_parked(conn: asyncpg.Connection, ids: Sequence[int] | None) -> list[int]:
    """Put parked rows back at the end of the outbox (all of them when `ids` is None); returns
    the ids moved. A row gets a new outbox id: it is published after the rows now waiting."""
    rows = await conn.fetch(
        """
        WITH moved AS (
            DELETE FROM outbox_parked WHERE $1::bigint[] IS NULL OR id = ANY($1::bigint[])
            RETURNING *
        ), ins AS (
            INSERT INTO outbox (topic, key, headers, value, kind, created_at)
            SELECT topic, key, headers, value, kind, created_at FROM moved ORDER BY id
            RETURNING 1
        )
        SELECT id FROM moved ORDER BY id
        """,
        None if ids is None else list(ids),
    )
    if rows:
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return [r["id"] for r in rows]


async def sample_backlog(conn: asyncpg.Connection, metrics: Metrics) -> None:
    """Backlog gauges, read by every instance whether or not it leads the relay: a leader that
    cannot publish (broker down) must still show the backlog growing."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n,"
        " (SELECT created_at FROM outbox ORDER BY id LIMIT 1) AS oldest,"
        " (SELECT count(*) FROM outbox_parked) AS parked FROM outbox"
    )
    assert row is not None
    metrics.outbox_pending.set(row["n"])
    metrics.outbox_parked.set(row["parked"])
    oldest = row["oldest"]
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
    metrics.outbox_oldest_age.set(max(age, 0.0))


async def take_relay_lead(conn: asyncpg.Connection) -> bool:
    """Try to become the one publisher; held for as long as this session lives."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", _RELAY_LOCK))


async def pending(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """The oldest rows waiting for publication, in the order they were written."""
    return list(
        await conn.fetch(
            "SELECT id, topic, key, headers, value, kind FROM outbox ORDER BY id LIMIT $1", limit
        )
    )


async def settle(
    conn: asyncpg.Connection, published: Sequence[int], refused: dict[int, str]
) -> None:
    """Remove what the broker acknowledged and park what it refused for good, at once."""
    async with conn.transaction():
        await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", list(published))
        if refused:
            await park(conn, refused)


async def parked(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """The rows the broker refused for good, with their size and the refusal."""
    rows = await conn.fetch(
        "SELECT id, kind, topic,"
        " coalesce(length(key), 0) + length(headers) + coalesce(length(value), 0) AS bytes,"
        " created_at, parked_at, error FROM outbox_parked ORDER BY id"
    )
    return [dict(r) for r in rows]


async def lock_parked(conn: asyncpg.Connection, ids: Sequence[int]) -> set[int]:
    """Lock these parked rows to the caller's transaction; the ids that exist."""
    rows = await conn.fetch(
        "SELECT id FROM outbox_parked WHERE id = ANY($1::bigint[]) FOR UPDATE", list(ids)
    )
    return {r["id"] for r in rows}
