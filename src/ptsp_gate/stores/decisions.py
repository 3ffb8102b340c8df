"""Storing decisions and queueing them for publication: one path for first decisions and
re-decisions alike."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from ptsp_gate.contract.cloudevents import binary_headers
from ptsp_gate.contract.events import (
    CE_TYPE_DECISION,
    DECISION_DATASCHEMA,
    ComplianceDecision,
    Outcome,
    PermitApplication,
)
from ptsp_gate.stores import compliance, outbox

# The trace context headers each decision carries, by decision id (observability/tracing.py).
TraceHeaders = Sequence[tuple[str, bytes]]
Traces = Mapping[UUID, TraceHeaders]

# Above this many decisions (a national re-decision, not a consumer batch), the statement is
# planned for its values rather than from a plan cached for earlier, smaller ones: a generic plan
# cannot see an array's length and may join the batch's sets by nested loops. Measured: 20,000
# re-decisions took 8.6 s with the cached plan, 3.9 s planned for them. Not for every batch:
# with every statement planned afresh, PostgreSQL spent a third more CPU in the throughput bench.
LARGE_BATCH = 2_000


async def store_decisions(
    conn: asyncpg.Connection,
    decisions: Sequence[tuple[ComplianceDecision, str, int | None]],
    topic: str,
    source: str,
    *,
    also: Sequence[outbox.OutboxRow] = (),
    traces: Traces | None = None,
) -> set[UUID]:
    """Record decisions and queue them for publication, in the caller's transaction, together
    with any other outbox rows (`also`: dead letters of the same batch). Returns the ids stored:
    a decision already present (stored by a concurrent transaction) is neither stored nor
    announced again.

    Each tuple is (decision, the input event's key, the enrolment version it used).
    """
    if not decisions:
        await outbox.insert(conn, also)
        return set()
    if len(decisions) > LARGE_BATCH:
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
    ds = [d for d, _, _ in decisions]
    projected = [d for d in ds if d.nib is not None and d.outcome is not Outcome.REJECTED]
    locked = await compliance.lock(
        conn, {d.nib for d in projected if d.nib}, {d.application_id for d in projected}
    )
    rows = await conn.fetch(
        """
        WITH inserted AS (
            INSERT INTO compliance_decision (decision_id, event_id, application_id, nib, action,
                region_code, outcome, reason_codes, reasons, enrolment_as_of, enrolment_version,
                policy_version, decided_at, supersedes)
            SELECT u.decision_id, u.event_id, u.application_id, u.nib, u.action, u.region_code,
                u.outcome, string_to_array(u.reason_codes, ','), u.reasons::jsonb,
                u.enrolment_as_of, u.enrolment_version, u.policy_version, u.decided_at,
                u.supersedes
            FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::bigint[],
                $12::text[], $13::timestamptz[], $14::uuid[])
            AS u(decision_id, event_id, application_id, nib, action, region_code, outcome,
                 reason_codes, reasons, enrolment_as_of, enrolment_version, policy_version,
                 decided_at, supersedes)
            ON CONFLICT (decision_id) DO NOTHING
            RETURNING decision_id, seq, event_id, application_id, nib, region_code, outcome,
                reason_codes, decided_at, policy_version, enrolment_as_of, supersedes
        )"""
        + compliance.WITH_DECISIONS
        + "SELECT i.decision_id, i.nib, "
        + compliance.SETTLE_COLUMNS
        + " FROM inserted i "
        + compliance.SETTLE_JOINS,
        [d.decision_id for d in ds],
        [event_key for _, event_key, _ in decisions],
        [d.application_id for d in ds],
        [d.nib for d in ds],
        [d.action.value if d.action else None for d in ds],
        [d.region_code for d in ds],
        [d.outcome.value for d in ds],
        [",".join(r.code.value for r in d.reasons) for d in ds],
        [json.dumps([r.model_dump(mode="json") for r in d.reasons]) for d in ds],
        [d.enrolment_as_of for d in ds],
        [v for _, _, v in decisions],
        [d.policy_version for d in ds],
        [d.decided_at for d in ds],
        [d.supersedes for d in ds],
        list(locked),
        [nib for nib, flagged in locked.items() if flagged],
    )
    stored = {r["decision_id"] for r in rows}
    # The employers the lock took, and those of the decisions stored (one without a row had
    # nothing to lock, and is told apart by the statement if another wrote it meanwhile).
    covered = locked.keys() | {d.nib for d in projected if d.nib and d.decision_id in stored}
    await compliance.settle(conn, rows, covered)
    await outbox.insert(
        conn,
        [
            *(
                announcement(d, topic, source, (traces or {}).get(d.decision_id, ()))
                for d in ds
                if d.decision_id in stored
            ),
            *also,
        ],
    )
    return stored


def announcement(
    decision: ComplianceDecision, topic: str, source: str, trace: TraceHeaders = ()
) -> outbox.OutboxRow:
    """The outbox row that publishes a stored decision: keyed by NIB, CloudEvents binary mode,
    with the trace context of what caused it (`trace`: headers, possibly none)."""
    return outbox.OutboxRow(
        topic=topic,
        key=(decision.nib or decision.application_id).encode(),
        headers=binary_headers(
            event_id=str(decision.decision_id),
            source=source,
            ce_type=CE_TYPE_DECISION,
            time=decision.decided_at,
            subject=decision.application_id,
            dataschema=DECISION_DATASCHEMA,
        )
        + list(trace),
        value=decision.model_dump_json().encode(),
        kind="decision",
    )


@dataclass(frozen=True, slots=True)
class OpenDecision:
    """The latest decision of an application that may still change, with the application."""

    decision_id: UUID
    outcome: str
    reason_codes: tuple[str, ...]
    event_id: str
    application: PermitApplication
    # The officer override the decision cites, if any: a re-decision under another one is news.
    override_id: str | None = None


Outcomes = tuple[str, ...]  # the outcomes that leave an application open

# The latest non-rejected decision of each application, with the application event it was about.
_LATEST = """
    SELECT DISTINCT ON (d.application_id)
           d.decision_id, d.application_id, d.nib, d.outcome, d.reason_codes, d.event_id,
           a.payload,
           CASE WHEN 'OFFICER_OVERRIDE' = ANY(d.reason_codes) THEN jsonb_path_query_first(
               d.reasons, '$[*] ? (@.code == "OFFICER_OVERRIDE").details.override_id') #>> '{{}}'
           END AS override_id
    FROM compliance_decision d
    JOIN permit_application a ON a.event_id = d.event_id
    WHERE d.outcome <> 'REJECTED' AND a.submitted_at >= $1 AND {which}
    ORDER BY d.application_id, d.seq DESC
"""
# A semi-join against the unnested array: hashed, so a million changed employers is one pass.
_OF_EMPLOYERS = _LATEST.format(which="d.nib IN (SELECT unnest($2::text[]))")
_OF_APPLICATIONS = _LATEST.format(which="d.application_id IN (SELECT unnest($2::text[]))")
_WITH_PENDING = _LATEST.format(
    which="d.application_id IN (SELECT p.application_id FROM compliance_decision p"
    " WHERE p.outcome = 'PENDING' AND p.decided_at >= $1)"
)


async def latest_of_employers(
    conn: asyncpg.Connection, nibs: Sequence[str], submitted_since: datetime, outcomes: Outcomes
) -> list[OpenDecision]:
    """The latest decision of each application of these employers submitted since then, when
    its outcome is one of `outcomes`."""
    return _open(await conn.fetch(_OF_EMPLOYERS, submitted_since, list(nibs)), outcomes)


async def latest_of_applications(
    conn: asyncpg.Connection, ids: Sequence[str], submitted_since: datetime, outcomes: Outcomes
) -> list[OpenDecision]:
    """The latest decision of each of these applications, when submitted since then and when
    its outcome is one of `outcomes`."""
    return _open(await conn.fetch(_OF_APPLICATIONS, submitted_since, list(ids)), outcomes)


async def latest_of_pending(
    conn: asyncpg.Connection, since: datetime, outcomes: Outcomes
) -> list[OpenDecision]:
    """The latest decision of each application decided PENDING since then (and submitted since
    then), when its outcome is one of `outcomes`."""
    return _open(await conn.fetch(_WITH_PENDING, since), outcomes)


def _open(rows: Sequence[asyncpg.Record], outcomes: Outcomes) -> list[OpenDecision]:
    # Filtered after DISTINCT ON picked the latest decision, and before parsing: a closed
    # application's payload is never read. Stored payloads were validated strictly on the way
    # in; read back from JSON, dates and enums are strings again, which only lax mode accepts.
    return [
        OpenDecision(
            decision_id=r["decision_id"],
            outcome=r["outcome"],
            reason_codes=tuple(r["reason_codes"]),
            event_id=r["event_id"],
            application=PermitApplication.model_validate(r["payload"], strict=False),
            override_id=r["override_id"],
        )
        for r in rows
        if r["outcome"] in outcomes
    ]
