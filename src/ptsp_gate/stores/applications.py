"""The permit applications as received: the record a decision is about, and what a re-decision
reads back."""

from __future__ import annotations

from collections.abc import Sequence

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
