"""The replay ledger: which dead-lettered records have been re-published, in `dlq_replay`.

A replay is claimed (committed) before its record is published and finished once the broker has
acknowledged it. A row left claimed is a replay interrupted in between; the next run that selects
the record publishes it again (at least once; the services dedupe by ce_id). Runs are serialised by
an advisory lock, so a claimed row seen by a run is never another live run's.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from ptsp_gate.dlq.records import Address, DeadLetter

_REPLAY_LOCK = 0x7074_7370_0004

CLAIMED = "claimed"
PUBLISHED = "published"


class ReplayBusy(RuntimeError):
    """Another replay holds the lock."""


@dataclass(frozen=True, slots=True)
class Replay:
    address: Address
    record_digest: str
    state: str
    claimed_at: datetime
    claimed_by: str
    target_topic: str
    replayed_at: datetime | None
    target_partition: int | None
    target_offset: int | None

    @property
    def target(self) -> str:
        if self.target_partition is None or self.target_offset is None:
            return self.target_topic
        return f"{self.target_topic}/{self.target_partition}/{self.target_offset}"


_COLUMNS = (
    "dlq_topic, dlq_partition, dlq_offset, record_digest, state, claimed_at, claimed_by,"
    " target_topic, replayed_at, target_partition, target_offset"
)


def _replay(row: asyncpg.Record) -> Replay:
    return Replay(
        Address(row["dlq_topic"], row["dlq_partition"], row["dlq_offset"]),
        row["record_digest"],
        row["state"],
        row["claimed_at"],
        row["claimed_by"],
        row["target_topic"],
        row["replayed_at"],
        row["target_partition"],
        row["target_offset"],
    )


async def for_topics(conn: asyncpg.Connection, dlq_topics: Iterable[str]) -> dict[Address, Replay]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM dlq_replay WHERE dlq_topic = ANY($1::text[])", list(dlq_topics)
    )
    return {r.address: r for r in map(_replay, rows)}


async def for_addresses(
    conn: asyncpg.Connection, addresses: Sequence[Address]
) -> dict[Address, Replay]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM dlq_replay d"
        " JOIN unnest($1::text[], $2::int[], $3::bigint[]) AS u(t, p, o)"
        " ON (d.dlq_topic, d.dlq_partition, d.dlq_offset) = (u.t, u.p, u.o)",
        [a.topic for a in addresses],
        [a.partition for a in addresses],
        [a.offset for a in addresses],
    )
    return {r.address: r for r in map(_replay, rows)}


async def handled(conn: asyncpg.Connection, topic: str, event_ids: Iterable[str]) -> set[str]:
    """The ce_ids the service reading `topic` has already accepted: a replay of one would be
    dropped as a duplicate."""
    rows = await conn.fetch(
        "SELECT event_key FROM processed_event WHERE topic = $1 AND event_key = ANY($2::text[])",
        topic,
        list(event_ids),
    )
    return {r["event_key"] for r in rows}


@contextlib.asynccontextmanager
async def exclusive(conn: asyncpg.Connection) -> AsyncIterator[None]:
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _REPLAY_LOCK):
        raise ReplayBusy("another `ptsp-gate dlq replay` is running; try again when it is done")
    try:
        yield
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _REPLAY_LOCK)


async def claim(
    conn: asyncpg.Connection, records: Sequence[tuple[DeadLetter, str]], by: str
) -> None:
    """Record (dead letter, target topic) pairs as being replayed; rows already there stay."""
    await conn.execute(
        "INSERT INTO dlq_replay (dlq_topic, dlq_partition, dlq_offset, record_digest,"
        " error_code, event_id, target_topic, state, claimed_by)"
        " SELECT u.*, $8, $9 FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[],"
        " $5::text[], $6::text[], $7::text[]) AS u"
        " ON CONFLICT (dlq_topic, dlq_partition, dlq_offset) DO NOTHING",
        [d.address.topic for d, _ in records],
        [d.address.partition for d, _ in records],
        [d.address.offset for d, _ in records],
        [d.digest for d, _ in records],
        [d.error_code for d, _ in records],
        [d.event_id for d, _ in records],
        [target for _, target in records],
        CLAIMED,
        by,
    )


async def finish(
    conn: asyncpg.Connection, published: Sequence[tuple[Address, str, int, int]]
) -> None:
    """Mark replays published: (DLQ address, target topic, partition, offset) as acknowledged."""
    await conn.execute(
        "UPDATE dlq_replay d SET state = $5, replayed_at = now(), target_topic = u.t,"
        " target_partition = u.tp, target_offset = u.tofs"
        " FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $6::int[], $7::bigint[])"
        " AS u(dt, dp, dofs, t, tp, tofs)"
        " WHERE (d.dlq_topic, d.dlq_partition, d.dlq_offset) = (u.dt, u.dp, u.dofs)",
        [a.topic for a, _, _, _ in published],
        [a.partition for a, _, _, _ in published],
        [a.offset for a, _, _, _ in published],
        [t for _, t, _, _ in published],
        PUBLISHED,
        [p for _, _, p, _ in published],
        [o for _, _, _, o in published],
    )
