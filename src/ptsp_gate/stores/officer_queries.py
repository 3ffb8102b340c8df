"""The compliance officer's questions (`ptsp-gate flagged`, `ptsp-gate employer`), as SQL over
the projection."""

from __future__ import annotations

from typing import Any

import asyncpg


async def flagged(
    conn: asyncpg.Connection, *, region: str | None = None, reason: str | None = None
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT f.nib, f.region_code, f.reason_codes, f.first_flagged_at, f.last_flagged_at,
               f.blocked_applications, f.enrolment_as_of, f.policy_version
        FROM flagged_employer f
        WHERE ($1::text IS NULL OR f.region_code = $1)
          AND ($2::text IS NULL OR $2 = ANY(f.reason_codes))
        ORDER BY f.region_code, f.first_flagged_at, f.nib
        """,
        region,
        reason,
    )
    return [dict(r) for r in rows]


async def employer(conn: asyncpg.Connection, nib: str) -> dict[str, Any]:
    enrolment = await conn.fetchrow(
        """
        SELECT nib, npwp, npp, status, segment, programs, workers_enrolled, arrears_months,
               pds_flags, sanction_requested, as_of, version, source, updated_at
        FROM employer_enrolment WHERE nib = $1
        """,
        nib,
    )
    decisions = await conn.fetch(
        """
        SELECT decision_id, application_id, action, region_code, outcome, reason_codes, reasons,
               enrolment_as_of, policy_version, decided_at, supersedes
        FROM compliance_decision WHERE nib = $1
        ORDER BY seq DESC
        """,
        nib,
    )
    return {
        "nib": nib,
        "enrolment": dict(enrolment) if enrolment is not None else None,
        "decisions": [dict(d) for d in decisions],
    }
