"""Officer overrides in PostgreSQL: the console asks, grants, refuses and revokes them; the permit
checker reads those in force when it decides, and settles those granted or ended since."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from ptsp_gate.policy.overrides import Grant, Scope
from ptsp_gate.stores import cursors

STATES = ("ASKED", "GRANTED", "REFUSED", "REVOKED", "EXPIRED")

_GRANT_COLUMNS = """
    o.override_id, o.scope, o.application_id, o.nib, o.region_code, o.legal_basis,
    o.document_ref, a.username AS asked_by, d.username AS granted_by, o.decided_at AS granted_at,
    o.expires_at
"""
_GRANT_FROM = """
    FROM officer_override o
    JOIN officer a ON a.officer_id = o.asked_by
    JOIN officer d ON d.officer_id = o.decided_by
"""


def _grant(r: asyncpg.Record) -> Grant:
    return Grant(
        override_id=r["override_id"],
        scope=Scope(r["scope"]),
        application_id=r["application_id"],
        nib=r["nib"],
        region_code=r["region_code"],
        legal_basis=r["legal_basis"],
        document_ref=r["document_ref"],
        asked_by=r["asked_by"],
        granted_by=r["granted_by"],
        granted_at=r["granted_at"],
        expires_at=r["expires_at"],
    )


async def in_force(
    conn: asyncpg.Connection, application_ids: Iterable[str], nibs: Iterable[str], now: datetime
) -> list[Grant]:
    """The granted overrides, unexpired, for these applications or (employer overrides) these
    employers; share-locked to the transaction's end, so that revoking one, or settling one that
    has expired, waits for the decisions made under it to be committed and then sees them."""
    rows = await conn.fetch(
        "SELECT"
        + _GRANT_COLUMNS
        + _GRANT_FROM
        + """
        WHERE o.state = 'GRANTED' AND o.expires_at > $3
          AND (o.application_id = ANY($1::text[])
               OR (o.scope = 'EMPLOYER' AND o.nib = ANY($2::text[])))
        FOR SHARE OF o
        """,
        sorted(set(application_ids)),
        sorted(set(nibs)),
        now,
    )
    return [_grant(r) for r in rows]


@dataclass(frozen=True, slots=True)
class Settling:
    """Overrides whose applications are to be decided again: granted and not applied yet, or
    ended (expired or revoked) and not yet decided again without them."""

    granted: list[Grant]
    ended: list[Grant]

    def __bool__(self) -> bool:
        return bool(self.granted or self.ended)


# A transaction that began deciding before an override was granted may commit its decision
# after the override was applied: such decisions are caught by settling a granted override again
# for this long after it was first applied (and an ended one after it ended). Re-deciding is
# idempotent, so the repeats change nothing otherwise. Longer than any deciding transaction,
# a national enrolment import's included.
GRACE = "interval '30 minutes'"


async def to_settle(conn: asyncpg.Connection, now: datetime) -> Settling:
    """Locked to the transaction's end, so that two permit checkers settle each override once."""
    rows = await conn.fetch(
        "SELECT"
        + _GRANT_COLUMNS
        + ", o.state"
        + _GRANT_FROM
        + f"""
        WHERE (o.state = 'GRANTED'
               AND (o.applied_at IS NULL OR o.applied_at > $1::timestamptz - {GRACE}
                    OR o.expires_at <= $1))
           OR (o.state = 'REVOKED' AND o.ended_at IS NULL)
           OR (o.state IN ('EXPIRED', 'REVOKED') AND o.ended_at > $1::timestamptz - {GRACE})
        ORDER BY o.override_id
        FOR UPDATE OF o
        """,
        now,
    )
    granted = [_grant(r) for r in rows if r["state"] == "GRANTED" and r["expires_at"] > now]
    ended = [_grant(r) for r in rows if r["state"] != "GRANTED" or r["expires_at"] <= now]
    return Settling(granted, ended)


async def settled(
    conn: asyncpg.Connection, applied: Sequence[UUID], ended: Sequence[UUID], now: datetime
) -> None:
    await conn.execute(
        """
        UPDATE officer_override
        SET applied_at = CASE WHEN override_id = ANY($1::uuid[])
                              THEN coalesce(applied_at, $3) ELSE applied_at END,
            ended_at = CASE WHEN override_id = ANY($2::uuid[])
                            THEN coalesce(ended_at, $3) ELSE ended_at END,
            state = CASE WHEN override_id = ANY($2::uuid[]) AND state = 'GRANTED'
                         THEN 'EXPIRED' ELSE state END
        WHERE (override_id = ANY($1::uuid[]) AND applied_at IS NULL)
           OR (override_id = ANY($2::uuid[]) AND ended_at IS NULL)
        """,
        list(applied),
        list(ended),
        now,
    )


async def next_expiry(conn: asyncpg.Connection) -> datetime | None:
    value: datetime | None = await conn.fetchval(
        "SELECT min(expires_at) FROM officer_override WHERE state = 'GRANTED'"
    )
    return value


# The console's side.


@dataclass(frozen=True, slots=True)
class Target:
    """What an override is asked for, as the gate knows it now."""

    application_id: str | None
    nib: str
    region_code: str
    outcome: str | None  # the application's standing; None for an employer


async def application_target(conn: asyncpg.Connection, application_id: str) -> Target | None:
    row = await conn.fetchrow(
        "SELECT nib, region_code, outcome, submitted_at FROM application_standing"
        " WHERE application_id = $1",
        application_id,
    )
    if row is None or row["region_code"] is None:
        return None
    return Target(application_id, row["nib"], row["region_code"], row["outcome"])


async def submitted_at(conn: asyncpg.Connection, application_id: str) -> datetime | None:
    value: datetime | None = await conn.fetchval(
        "SELECT submitted_at FROM application_standing WHERE application_id = $1", application_id
    )
    return value


async def employer_regions(conn: asyncpg.Connection, nib: str) -> list[str]:
    """The regions the employer has applied in."""
    rows = await conn.fetch(
        "SELECT DISTINCT region_code FROM application_standing"
        " WHERE nib = $1 AND region_code IS NOT NULL ORDER BY region_code",
        nib,
    )
    return [r["region_code"] for r in rows]


@dataclass(frozen=True, slots=True)
class Request:
    scope: Scope
    application_id: str | None
    nib: str
    region_code: str
    legal_basis: str
    document_ref: str
    reason: str
    expires_at: datetime


async def ask(conn: asyncpg.Connection, request: Request, officer_id: int) -> UUID:
    value: UUID = await conn.fetchval(
        """
        INSERT INTO officer_override (scope, application_id, nib, region_code, legal_basis,
            document_ref, reason, expires_at, asked_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        RETURNING override_id
        """,
        request.scope.value,
        request.application_id,
        request.nib,
        request.region_code,
        request.legal_basis,
        request.document_ref,
        request.reason,
        request.expires_at,
        officer_id,
    )
    return value


_VIEW = """
    SELECT o.override_id, o.scope, o.application_id, o.nib, o.region_code, o.legal_basis,
           o.document_ref, o.reason, o.expires_at, o.asked_at, o.state, o.asked_by AS asked_by_id,
           a.username AS asked_by, d.username AS decided_by, o.decided_at, o.decision_note,
           r.username AS revoked_by, o.revoked_at, o.applied_at, o.ended_at,
           e.employer_name
    FROM officer_override o
    JOIN officer a ON a.officer_id = o.asked_by
    LEFT JOIN officer d ON d.officer_id = o.decided_by
    LEFT JOIN officer r ON r.officer_id = o.revoked_by
    LEFT JOIN employer_compliance e ON e.nib = o.nib
"""


async def one(
    conn: asyncpg.Connection, override_id: UUID, *, lock: bool = False
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        _VIEW + " WHERE o.override_id = $1" + (" FOR UPDATE OF o" if lock else ""), override_id
    )
    return dict(row) if row is not None else None


async def answer(
    conn: asyncpg.Connection,
    override_id: UUID,
    *,
    state: str,
    officer_id: int,
    note: str | None,
    now: datetime,
) -> None:
    """Grant or refuse an asked override (the caller checked who may, under the row's lock)."""
    await conn.execute(
        """
        UPDATE officer_override
        SET state = $2, decided_by = $3, decided_at = $4, decision_note = $5
        WHERE override_id = $1 AND state = 'ASKED'
        """,
        override_id,
        state,
        officer_id,
        now,
        note,
    )


async def revoke(
    conn: asyncpg.Connection, override_id: UUID, *, officer_id: int, now: datetime
) -> None:
    await conn.execute(
        """
        UPDATE officer_override SET state = 'REVOKED', revoked_by = $2, revoked_at = $3
        WHERE override_id = $1 AND state = 'GRANTED'
        """,
        override_id,
        officer_id,
        now,
    )


async def page(
    conn: asyncpg.Connection,
    *,
    regions: Sequence[str] | None,
    state: str | None,
    nib: str | None,
    before: tuple[datetime, UUID] | None,
    limit: int,
) -> tuple[list[dict[str, Any]], tuple[datetime, UUID] | None]:
    """Newest first; the next page's position, or None at the end."""
    rows = await conn.fetch(
        _VIEW
        + """
        WHERE ($1::text[] IS NULL OR o.region_code = ANY($1::text[]))
          AND ($2::text IS NULL OR o.state = $2)
          AND ($3::text IS NULL OR o.nib = $3)
          AND ($4::timestamptz IS NULL OR (o.asked_at, o.override_id) < ($4, $5::uuid))
        ORDER BY o.asked_at DESC, o.override_id DESC
        LIMIT $6
        """,
        list(regions) if regions is not None else None,
        state,
        nib,
        before[0] if before else None,
        before[1] if before else None,
        limit + 1,
    )
    items = [dict(r) for r in rows[:limit]]
    following = (items[-1]["asked_at"], items[-1]["override_id"]) if len(rows) > limit else None
    return items, following


def encode_cursor(position: tuple[datetime, UUID]) -> str:
    return cursors.encode([position[0].isoformat(), str(position[1])])


def decode_cursor(text: str) -> tuple[datetime, UUID]:
    at, override_id = cursors.decode(text, 2)
    try:
        position = (datetime.fromisoformat(str(at)), UUID(str(override_id)))
    except ValueError:
        raise cursors.BadCursor("not a cursor this program printed") from None
    if position[0].tzinfo is None:
        raise cursors.BadCursor("not a cursor this program printed")
    return position


async def decisions_under(conn: asyncpg.Connection, override_id: UUID) -> list[dict[str, Any]]:
    """The decisions that cite this override: what it changed on the decisions topic."""
    rows = await conn.fetch(
        """
        SELECT d.decision_id, d.application_id, d.outcome, d.reason_codes, d.decided_at,
               d.supersedes
        FROM officer_override o
        JOIN compliance_decision d ON d.nib = o.nib
        WHERE o.override_id = $1 AND 'OFFICER_OVERRIDE' = ANY(d.reason_codes)
          AND d.reasons @> jsonb_build_array(jsonb_build_object(
                'code', 'OFFICER_OVERRIDE',
                'details', jsonb_build_object('override_id', $1::text)))
        ORDER BY d.seq
        """,
        override_id,
    )
    return [dict(r) for r in rows]
