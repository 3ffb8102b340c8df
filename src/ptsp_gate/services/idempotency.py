"""Which input events have been handled already: the dedupe behind at-least-once input."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import asyncpg

from ptsp_gate.services.intake import Invalid


async def claim(conn: asyncpg.Connection, topic: str, keys: Iterable[str]) -> set[str]:
    """Record the keys as handled, in the caller's transaction; returns those not seen before."""
    rows = await conn.fetch(
        "INSERT INTO processed_event (topic, event_key)"
        " SELECT $2, unnest($1::text[]) ON CONFLICT DO NOTHING RETURNING event_key",
        list(keys),
        topic,
    )
    return {r["event_key"] for r in rows}


async def claim_dead_letters(
    conn: asyncpg.Connection, topic: str, items: Mapping[str, Invalid]
) -> set[str]:
    """Record records about to be dead-lettered as handled, in the caller's transaction; returns
    the keys of `items` not seen before.

    A dead letter is recorded under a digest of its bytes, never under its ce_id. Were the ce_id
    taken, the same event replayed from the DLQ once the cause is fixed (`ptsp-gate dlq replay`)
    would be dropped as a duplicate instead of decided. The same bytes redelivered still dedupe;
    a replay carries a `ptsp-gate-replayed-from` header, so one that fails again is dead-lettered
    again rather than vanishing. A record whose ce_id was already accepted is a duplicate of that
    event and is dropped, as any duplicate is.
    """
    if not items:
        return set()
    by_content = {item.content_key: key for key, item in items.items()}
    rows = await conn.fetch(
        "INSERT INTO processed_event (topic, event_key)"
        " SELECT $1, u.content_key"
        " FROM unnest($2::text[], $3::text[]) AS u(content_key, event_id)"
        " WHERE u.event_id IS NULL OR NOT EXISTS ("
        "   SELECT 1 FROM processed_event p WHERE p.topic = $1 AND p.event_key = u.event_id)"
        " ON CONFLICT DO NOTHING RETURNING event_key",
        topic,
        list(by_content),
        [items[key].event_id for key in by_content.values()],
    )
    return {by_content[r["event_key"]] for r in rows}
