"""The permit applications as received: the record a decision is about, and what a what-if run
of the policy (`policy simulate`) reads back."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import asyncpg

from ptsp_gate.contract.events import PermitApplication
from ptsp_gate.runtime.intake import Valid


async def insert(
    conn: asyncpg.Connection, applications: Sequence[Valid[PermitApplication]]
) -> None:
    if not applications:
        return
    await conn.execute(
        """
        INSERT INTO permit_application (event_id, application_id, action, nib, npwp,
            region_code, scale, workers_declared, submitted_at, payload)
        SELECT u.event_id, u.application_id, u.action, u.nib, u.npwp, u.region_code,
            u.scale, u.workers_declared, u.submitted_at, u.payload::jsonb
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
            $6::text[], $7::text[], $8::int[], $9::timestamptz[], $10::text[])
        AS u(event_id, application_id, action, nib, npwp, region_code, scale,
             workers_declared, submitted_at, payload)
        """,
        [a.event.id for a in applications],
        [a.payload.application_id for a in applications],
        [a.payload.action.value for a in applications],
        [a.payload.employer.nib for a in applications],
        [a.payload.employer.npwp for a in applications],
        [a.payload.region_code for a in applications],
        [a.payload.employer.scale.value for a in applications],
        [a.payload.employer.workers_declared for a in applications],
        [a.payload.submitted_at for a in applications],
        [a.data_text for a in applications],
    )


# For each application: the event the PTSP sent last and the latest non-REJECTED decision on it.
# The latest event is picked before the region/date filters apply, so a corrected resend that
# moved an application to another region is judged where it now is, not where it first was.
# received_at ties within one consumer batch; the event decided first in that batch (its first
# decision's seq) was also read first, so the later one is the latest.
_LATEST_WITH_STATE = """
WITH latest AS (
    SELECT DISTINCT ON (a.application_id)
           a.application_id, a.nib, a.region_code, a.submitted_at, a.payload
    FROM permit_application a
    LEFT JOIN LATERAL (
        SELECT min(d.seq) AS seq FROM compliance_decision d
        WHERE d.application_id = a.application_id AND d.event_id = a.event_id
    ) fd ON true
    ORDER BY a.application_id, a.received_at DESC, fd.seq DESC NULLS LAST, a.event_id DESC
)
SELECT l.application_id, l.region_code, l.submitted_at, l.payload::text AS payload,
       s.outcome AS stored_outcome, s.reason_codes AS stored_reason_codes,
       e.nib, e.npwp, e.npp, e.status, e.segment, e.programs, e.workers_enrolled,
       e.arrears_months, e.pds_flags, e.sanction_requested, e.as_of, e.version,
       EXISTS (SELECT 1 FROM region_snapshot r WHERE r.region_code = l.region_code)
           AS snapshot_complete
FROM latest l
LEFT JOIN LATERAL (
    SELECT d.outcome, d.reason_codes FROM compliance_decision d
    WHERE d.application_id = l.application_id AND d.outcome <> 'REJECTED'
    ORDER BY d.seq DESC LIMIT 1
) s ON true
LEFT JOIN employer_enrolment e ON e.nib = l.nib
WHERE ($1::text IS NULL OR l.region_code = $1)
  AND ($2::timestamptz IS NULL OR l.submitted_at >= $2)
"""


@contextlib.asynccontextmanager
async def read_only(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """A transaction PostgreSQL itself keeps from writing, so a what-if can never alter the
    decisions it is about, even after a careless change to this module: the write would fail.
    Repeatable read makes every query of the run see the same state."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        yield


async def latest_with_state(
    conn: asyncpg.Connection, region: str | None, since: datetime | None, batch_size: int
) -> AsyncIterator[list[asyncpg.Record]]:
    """In the caller's transaction, in batches through a server-side cursor (memory stays flat
    however many applications a regency has): each application's latest event, its latest
    non-REJECTED decision, its employer's enrolment state and whether its region's snapshot is
    complete."""
    cursor = await conn.cursor(_LATEST_WITH_STATE, region, since)
    while rows := await cursor.fetch(batch_size):
        yield list(rows)
