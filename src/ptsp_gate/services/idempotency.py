"""Which input events have been handled already: the dedupe behind at-least-once input."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg


async def claim(conn: asyncpg.Connection, topic: str, keys: Iterable[str]) -> set[str]:
    """Record the keys as handled, in the caller's transaction; returns those not seen before."""
    rows = await conn.fetch(
        "INSERT INTO processed_event (topic, event_key)"
        " SELECT $2, unnest($1::text[]) ON CONFLICT DO NOTHING RETURNING event_key",
        list(keys),
        topic,
    )
    return {r["event_key"] for r in rows}
