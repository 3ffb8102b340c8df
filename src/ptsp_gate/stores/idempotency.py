"""Which input events have been handled already: the dedupe behind at-least-once input."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import asyncpg

from ptsp_gate.runtime.intake import Invalid


async def stored_digests(
    conn: asyncpg.Connection, topic: str, keys: Iterable[str]
) -> dict[str, bytes | None]:
    """The keys already handled, with the digest of the content each was accepted with (None
    for one recorded before digests were kept)."""
    rows = await conn.fetch(
        "SELECT event_key, content_digest FROM processed_event"
        " WHERE topic = $1 AND event_key = ANY($2::text[])",
        topic,
        list(keys),
    )
    return {r["event_key"]: r["content_digest"] for r in rows}


async def claim(
    conn: asyncpg.Connection, topic: str, digests: Mapping[str, bytes]
) -> tuple[set[str], set[str]]:
    """Record the keys as handled, each with a digest of its content, in the caller's
    transaction. Returns the keys not seen before, and the keys seen before with other content
    (an ID conflict: another event under an id already used). A key seen before with the same
    content, or recorded before digests were kept, is in neither: a redelivery."""
    keys = list(digests)
    rows = await conn.fetch(
        "INSERT INTO processed_event (topic, event_key, content_digest)"
        " SELECT $1, u.event_key, u.digest"
        " FROM unnest($2::text[], $3::bytea[]) AS u(event_key, digest)"
        " ON CONFLICT DO NOTHING RETURNING event_key",
        topic,
        keys,
        [digests[k] for k in keys],
    )
    fresh = {r["event_key"] for r in rows}
    seen = [k for k in keys if k not in fresh]
    if not seen:
        return fresh, set()
    # A statement of its own: it sees what a concurrent transaction inserted under the same key
    # (the insert above waited for that transaction to commit), which the insert's snapshot does
    # not. Redeliveries are rare, so this round trip is too.
    stored = await conn.fetch(
        "SELECT event_key, content_digest FROM processed_event"
        " WHERE topic = $1 AND event_key = ANY($2::text[])",
        topic,
        seen,
    )
    conflicting = {
        r["event_key"]
        for r in stored
        if r["content_digest"] is not None and r["content_digest"] != digests[r["event_key"]]
    }
    return fresh, conflicting


async def claim_dead_letters(
    conn: asyncpg.Connection, topic: str, items: Mapping[str, Invalid]
) -> set[str]:
    """Record records about to be dead-lettered as handled, in the caller's transaction; returns
    the keys of `items` not seen before.

    A dead letter is recorded under a digest of its bytes, never under its ce_id. Were the ce_id
    taken, the same event replayed from the DLQ once the cause is fixed (`ptsp-gate dlq replay`)
    would be dropped as a duplicate instead of decided. The same bytes redelivered still dedupe;
    a replay carries a `ptsp-gate-replayed-from` header, so one that fails again is dead-lettered
    again rather than vanishing. The caller turns a record under a ce_id already accepted into an
    ID_CONFLICT first (no event id, so it is kept here); the clause below only covers an event
    accepted by a concurrent transaction meanwhile.
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
