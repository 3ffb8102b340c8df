"""Re-deciding open applications when what they were decided on has changed.

An application is open when its latest decision is PENDING or BLOCKED and it was submitted within
the re-decision window. When its employer's enrolment state changes (stream or import), or on the
periodic sweep of PENDING applications, it is decided again under the policy in force; a new
decision superseding the old one is stored and announced only when the outcome or the reasons
differ. Everything is set-wise: one query finds the candidates among any number of employers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from ptsp_gate.contract.events import ComplianceDecision, PermitApplication
from ptsp_gate.observability import decision_log
from ptsp_gate.observability.metrics import Metrics
from ptsp_gate.policy import PolicyBook, decide, decision_id
from ptsp_gate.stores import decisions, enrolments

# The latest non-rejected decision of each application, with the application event it was about.
_LATEST = """
    SELECT DISTINCT ON (d.application_id)
           d.decision_id, d.application_id, d.nib, d.outcome, d.reason_codes, d.event_id,
           a.payload
    FROM compliance_decision d
    JOIN permit_application a ON a.event_id = d.event_id
    WHERE d.outcome <> 'REJECTED' AND a.submitted_at >= $1 AND {which}
    ORDER BY d.application_id, d.seq DESC
"""
# A semi-join against the unnested array: hashed, so a million changed employers is one pass.
_OF_EMPLOYERS = _LATEST.format(which="d.nib IN (SELECT unnest($2::text[]))")
_WITH_PENDING = _LATEST.format(
    which="d.application_id IN (SELECT p.application_id FROM compliance_decision p"
    " WHERE p.outcome = 'PENDING' AND p.decided_at >= $1)"
)


@dataclass(frozen=True, slots=True)
class Change:
    application_id: str
    nib: str
    from_outcome: str
    to_outcome: str
    decision: ComplianceDecision
    event_id: str
    enrolment_version: int | None


async def redecide_employers(
    conn: asyncpg.Connection,
    nibs: Sequence[str],
    *,
    policies: PolicyBook,
    window_days: int,
    now: datetime,
    decisions_topic: str,
    event_source: str,
) -> list[Change]:
    """In the caller's transaction: re-decide the open applications of these employers."""
    if not nibs:
        return []
    rows = await conn.fetch(_OF_EMPLOYERS, now - timedelta(days=window_days), list(nibs))
    return await _redecide(
        conn,
        rows,
        open_outcomes=("PENDING", "BLOCKED"),
        policies=policies,
        now=now,
        decisions_topic=decisions_topic,
        event_source=event_source,
    )


async def sweep_pending(
    conn: asyncpg.Connection,
    *,
    policies: PolicyBook,
    window_days: int,
    now: datetime,
    decisions_topic: str,
    event_source: str,
) -> list[Change]:
    """In the caller's transaction: re-decide every open PENDING application, so that
    ENROLMENT_UNKNOWN and ENROLMENT_STALE resolve once data is there (or a region's complete
    snapshot makes absence meaningful), whatever path the data came by."""
    rows = await conn.fetch(_WITH_PENDING, now - timedelta(days=window_days))
    return await _redecide(
        conn,
        rows,
        open_outcomes=("PENDING",),
        policies=policies,
        now=now,
        decisions_topic=decisions_topic,
        event_source=event_source,
    )


async def _redecide(
    conn: asyncpg.Connection,
    rows: Sequence[asyncpg.Record],
    *,
    open_outcomes: tuple[str, ...],
    policies: PolicyBook,
    now: datetime,
    decisions_topic: str,
    event_source: str,
) -> list[Change]:
    rows = [r for r in rows if r["outcome"] in open_outcomes]
    if not rows:
        return []
    states = await enrolments.fetch_many(conn, (r["nib"] for r in rows))
    # Stored payloads were validated strictly on the way in; read back from JSON, dates and enums
    # are strings again, which only lax mode accepts.
    applications = [PermitApplication.model_validate(r["payload"], strict=False) for r in rows]
    complete = await complete_regions(conn, {a.region_code for a in applications})
    changes: list[Change] = []
    for row, application in zip(rows, applications, strict=True):
        enrolment = states.get(row["nib"])
        verdict = decide(
            application,
            enrolment,
            policies.for_region(application.region_code),
            now,
            snapshot_complete=application.region_code in complete,
        )
        codes = [r.code.value for r in verdict.reasons]
        if verdict.outcome.value == row["outcome"] and codes == list(row["reason_codes"]):
            continue
        version = enrolment.version if enrolment is not None else None
        decision = ComplianceDecision.model_construct(
            decision_id=decision_id(row["event_id"], verdict, version, row["decision_id"]),
            application_id=application.application_id,
            nib=application.employer.nib,
            action=application.action,
            region_code=application.region_code,
            outcome=verdict.outcome,
            reasons=list(verdict.reasons),
            enrolment_as_of=verdict.enrolment_as_of,
            policy_version=verdict.policy_version,
            decided_at=now,
            supersedes=row["decision_id"],
        )
        changes.append(
            Change(
                application.application_id,
                application.employer.nib,
                row["outcome"],
                verdict.outcome.value,
                decision,
                row["event_id"],
                version,
            )
        )
    # A concurrent re-decider may have stored the same decision first: only what this
    # transaction inserted counts (and is announced).
    stored = await decisions.store_decisions(
        conn,
        [(c.decision, c.event_id, c.enrolment_version) for c in changes],
        decisions_topic,
        event_source,
    )
    return [c for c in changes if c.decision.decision_id in stored]


async def complete_regions(conn: asyncpg.Connection, regions: set[str | None]) -> set[str]:
    """Regions whose complete BPJS TK snapshot has been loaded."""
    wanted = [r for r in regions if r]
    if not wanted:
        return set()
    rows = await conn.fetch(
        "SELECT region_code FROM region_snapshot WHERE region_code = ANY($1::text[])", wanted
    )
    return {r["region_code"] for r in rows}


def observe(metrics: Metrics, changes: Sequence[Change], trigger: str) -> None:
    """Count and log committed re-decisions (call after the transaction commits)."""
    if decision_log.enabled():
        for c in changes:
            decision_log.superseded(
                c.decision, event_id=c.event_id, from_outcome=c.from_outcome, trigger=trigger
            )
    for (old, new), n in Counter((c.from_outcome, c.to_outcome) for c in changes).items():
        metrics.redecisions.labels(old, new).inc(n)
