"""The compliance projection (`application_standing`, `employer_compliance`,
`compliance_episode`), kept current in the transaction that stores each decision, and checked
against its recomputation from the history.

Every writer of decisions (the permit checker, re-deciders after an enrolment update or an import,
the sweep) stores them through `ptsp_gate.stores.decisions.store_decisions`, which calls `lock`
before it inserts and `record` after. The lock is per employer (its `employer_compliance` row):
while one transaction holds an employer's, no other inserts a decision about it, so the
decisions of one employer get their `seq` in the order their transactions commit, and each
transaction reads the projection as the previous one left it. That is what lets episodes and
counts be maintained incrementally.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from ptsp_gate.contract.events import ComplianceDecision
from ptsp_gate.episodes import Step, Walk, walk


async def lock(
    conn: asyncpg.Connection, nibs: Collection[str], application_ids: Collection[str]
) -> dict[str, bool]:
    """Lock the employers' rows, in NIB order for every transaction (no deadlock between two of
    them): these employers, and those the applications were last decided under (a corrected
    resend may move an application to another NIB, whose counts then change too). Row locks,
    not advisory locks: a national re-decision locks a hundred thousand employers, and row
    locks take no room in the server's shared lock table. An employer without a row yet has
    nothing to lock: two transactions that both make its first row are told apart when they
    write it (see `record`). Returns the NIBs whose rows are locked, each with whether it is
    flagged, which no other transaction can change before this one ends."""
    if not nibs:
        return {}
    rows = await conn.fetch(
        """
        SELECT c.nib, c.outcome = 'BLOCKED' AS flagged FROM employer_compliance c
        -- An array, so that the rows are found through the primary key: a join may be planned
        -- as a pass over every employer, on every batch.
        WHERE c.nib = ANY(ARRAY(
            SELECT unnest($1::text[])
            UNION
            SELECT s.nib FROM unnest($2::text[]) k(id)
            CROSS JOIN LATERAL (
                SELECT nib FROM application_standing WHERE application_id = k.id OFFSET 0
            ) s
        ))
        ORDER BY c.nib
        FOR UPDATE
        """,
        list(nibs),
        list(application_ids),
    )
    return {r["nib"]: r["flagged"] for r in rows}


# Appended to the statement that inserts decisions (`inserted`: the rows it inserted), so that
# the applications' standing moves with them without sending them again: `standing_before`
# holds what it was (read before the statement changes it).
STANDING_WITH_DECISIONS = """
, newest AS (
    SELECT DISTINCT ON (application_id) * FROM inserted
    WHERE outcome <> 'REJECTED' AND nib IS NOT NULL
    ORDER BY application_id, seq DESC
), standing_before AS (
    SELECT n.application_id, s.nib, s.outcome
    FROM newest n
    CROSS JOIN LATERAL (
        -- OFFSET 0: an index look-up per application, never a pass over the whole table
        SELECT nib, outcome FROM application_standing
        WHERE application_id = n.application_id OFFSET 0
    ) s
), standing AS (
    INSERT INTO application_standing AS s (application_id, nib, region_code, outcome,
        reason_codes, decision_id, seq, decided_at, submitted_at)
    SELECT n.application_id, n.nib, n.region_code, n.outcome, n.reason_codes, n.decision_id,
        n.seq, n.decided_at,
        (SELECT a.submitted_at FROM permit_application a WHERE a.event_id = n.event_id)
    FROM newest n
    ON CONFLICT (application_id) DO UPDATE SET
        nib = excluded.nib, region_code = excluded.region_code, outcome = excluded.outcome,
        reason_codes = excluded.reason_codes, decision_id = excluded.decision_id,
        seq = excluded.seq, decided_at = excluded.decided_at,
        submitted_at = excluded.submitted_at
    WHERE excluded.seq > s.seq
    -- xmax is set on a row this statement updated rather than inserted
    RETURNING application_id, xmax <> 0 AS replaced
)
"""


async def record(
    conn: asyncpg.Connection,
    decisions: Sequence[ComplianceDecision],
    inserted: Sequence[asyncpg.Record],
    locked: Mapping[str, bool],
) -> None:
    """Fold into the projection the decisions just inserted, in this transaction, under `lock`
    of their employers (`locked`: what it returned): `inserted` are the rows of the statement
    that inserted them (seq, the standing before), `decisions` what was asked."""
    seqs: dict[UUID, int] = {r["decision_id"]: r["seq"] for r in inserted}
    stored = sorted(
        (d for d in decisions if d.decision_id in seqs and d.nib is not None),
        key=lambda d: seqs[d.decision_id],
    )
    if not stored:
        return
    by_id = {d.decision_id: d for d in stored}
    before: dict[str, tuple[str, str]] = {
        r["application_id"]: (r["nib_before"], r["outcome_before"])
        for r in inserted
        if r["nib_before"] is not None and r["decision_id"] in by_id
    }
    steps = [
        Step(
            nib=d.nib or "",
            seq=seqs[d.decision_id],
            decided_at=d.decided_at,
            decision_id=d.decision_id,
            region_code=d.region_code,
            reason_codes=tuple(r.code.value for r in d.reasons),
            outcome=d.outcome.value,
            supersedes=d.supersedes is not None,
        )
        for d in stored
    ]
    after = {d.application_id: (d.nib or "", d.outcome.value) for d in stored}
    # An employer without a row was not flagged; if another transaction wrote its first row
    # meanwhile, `_employers` finds out, and it is recomputed below.
    walked = walk(locked, steps)
    first_rows = {s.nib for s in steps} - locked.keys()
    # Employers whose first row another transaction wrote while this one ran: both decided
    # about a new employer at once, so this walk did not start from where that one left off.
    contested = await _employers(conn, steps, walked, _counts(before, after), first_rows)
    await _episodes(conn, walked, skip=contested)
    unlocked = {nib for nib, _ in before.values()} - locked.keys() - {s.nib for s in steps}
    raced = {r["application_id"] for r in inserted if r["raced"]}
    raced |= {app for app, (nib, _) in before.items() if nib in unlocked}
    concerned = set(contested)
    if raced:
        # Another transaction decided one of these applications under another NIB at the same
        # time (a corrected resend, from another partition): the standing read, and so the
        # counts moved, may be stale. Every employer that decided them is taken again below.
        concerned |= set(
            await conn.fetchval(
                "SELECT array(SELECT DISTINCT nib FROM compliance_decision"
                " WHERE application_id = ANY($1::text[]) AND nib IS NOT NULL"
                " AND outcome <> 'REJECTED')",
                sorted(raced),
            )
        )
    if concerned:
        # Rare. Locked out of order (a deadlock is possible, and retried like any other), then
        # recomputed from the history, which now holds the other transaction's decisions too.
        await lock(conn, sorted(concerned), ())
        await refresh(conn, sorted(concerned))


# What the two writers of employer rows share: the columns, and the latest decision's fields,
# which a new row and an updated one take alike.
_UPSERT_EMPLOYER = """
    INSERT INTO employer_compliance AS c (nib, region_code, employer_name, npwp, outcome,
        reason_codes, decision_id, seq, decided_at, policy_version, enrolment_as_of,
        first_flagged_at, flagged_since, open_applications, blocked_applications)
"""
_LATEST_FROM_EXCLUDED = """
    region_code = excluded.region_code, employer_name = excluded.employer_name,
    npwp = excluded.npwp, outcome = excluded.outcome,
    reason_codes = excluded.reason_codes, decision_id = excluded.decision_id,
    seq = excluded.seq, decided_at = excluded.decided_at,
    policy_version = excluded.policy_version, enrolment_as_of = excluded.enrolment_as_of,
"""


# Per employer, how its (open, blocked) application counts change.
Deltas = dict[str, list[int]]


def _counts(before: Mapping[str, tuple[str, str]], after: Mapping[str, tuple[str, str]]) -> Deltas:
    deltas: Deltas = {}

    def add(nib: str, outcome: str, sign: int) -> None:
        d = deltas.setdefault(nib, [0, 0])
        d[0] += sign if outcome in ("PENDING", "BLOCKED") else 0
        d[1] += sign if outcome == "BLOCKED" else 0

    for application_id, (nib, outcome) in after.items():
        if application_id in before:
            add(*before[application_id], -1)
        add(nib, outcome, +1)
    return deltas


async def _employers(
    conn: asyncpg.Connection,
    steps: Sequence[Step],
    walked: Walk,
    deltas: Deltas,
    first_rows: set[str],
) -> set[str]:
    """Each employer's row after the batch: its latest decision is the batch's last one about it
    (the lock guarantees no later one exists), its counts move by the batch's changes to its
    applications' standing, and its flagged times come from the walk or stay as they were.
    Returns the employers of `first_rows` (expected to have no row yet) whose row another
    transaction wrote first."""
    latest = {s.nib: s for s in sorted(steps, key=lambda s: s.seq)}
    first_began: dict[str, datetime] = {}
    open_began: dict[str, datetime] = {}
    for e in walked.began:
        first_began.setdefault(e.nib, e.began_at)
        if e.end is None:
            open_began[e.nib] = e.began_at
    nibs = list(latest)
    written = await conn.fetch(
        _UPSERT_EMPLOYER
        + f"""
        SELECT d.nib, d.region_code, a.payload -> 'employer' ->> 'name', a.npwp, d.outcome,
            d.reason_codes, d.decision_id, d.seq, d.decided_at, d.policy_version,
            d.enrolment_as_of, u.first_flagged_at, u.flagged_since, u.open_delta,
            u.blocked_delta
        FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::integer[],
            $5::integer[]) AS u(decision_id, first_flagged_at, flagged_since, open_delta,
                                blocked_delta)
        CROSS JOIN LATERAL (
            -- OFFSET 0: index look-ups per row, never a pass over the whole table
            SELECT * FROM compliance_decision WHERE decision_id = u.decision_id OFFSET 0
        ) d
        LEFT JOIN LATERAL (
            SELECT p.payload, p.npwp FROM permit_application p WHERE p.event_id = d.event_id
            OFFSET 0
        ) a ON true
        ON CONFLICT (nib) DO UPDATE SET {_LATEST_FROM_EXCLUDED}
            first_flagged_at = coalesce(c.first_flagged_at, excluded.first_flagged_at),
            flagged_since = CASE WHEN excluded.outcome = 'BLOCKED'
                                 THEN coalesce(excluded.flagged_since, c.flagged_since) END,
            open_applications = c.open_applications + excluded.open_applications,
            blocked_applications = c.blocked_applications + excluded.blocked_applications
        RETURNING nib, xmax <> 0 AS updated
        """,
        [latest[n].decision_id for n in nibs],
        [first_began.get(n) for n in nibs],
        [open_began.get(n) for n in nibs],
        [deltas.get(n, [0, 0])[0] for n in nibs],
        [deltas.get(n, [0, 0])[1] for n in nibs],
    )
    # Employers an application moved away from: only their counts change.
    moved = [(nib, d) for nib, d in deltas.items() if nib not in latest and d != [0, 0]]
    if moved:
        await conn.execute(
            """
            UPDATE employer_compliance c
            SET open_applications = c.open_applications + u.open_delta,
                blocked_applications = c.blocked_applications + u.blocked_delta
            FROM unnest($1::text[], $2::integer[], $3::integer[])
                AS u(nib, open_delta, blocked_delta)
            -- = ANY as well: the rows are found through the primary key, not by a pass over
            -- the table to join with
            WHERE c.nib = u.nib AND c.nib = ANY($1::text[])
            """,
            [nib for nib, _ in moved],
            [d[0] for _, d in moved],
            [d[1] for _, d in moved],
        )
    return {r["nib"] for r in written if r["updated"] and r["nib"] in first_rows}


async def refresh(conn: asyncpg.Connection, nibs: Sequence[str]) -> None:
    """Recompute these employers' episodes and rows from the history (under their row locks):
    the episodes from `recomputed_compliance_episode` (its window functions are partitioned by
    NIB, so the filter reaches the index), the row from the latest decision, the applications'
    standing and those episodes."""
    await conn.execute("DELETE FROM compliance_episode WHERE nib = ANY($1::text[])", list(nibs))
    await conn.execute(
        "INSERT INTO compliance_episode"
        " SELECT * FROM recomputed_compliance_episode WHERE nib = ANY($1::text[])",
        list(nibs),
    )
    await conn.execute(
        _UPSERT_EMPLOYER
        + f"""
        SELECT l.nib, l.region_code, a.payload -> 'employer' ->> 'name', a.npwp, l.outcome,
            l.reason_codes, l.decision_id, l.seq, l.decided_at, l.policy_version,
            l.enrolment_as_of, e.first_flagged_at, e.flagged_since, n.open_applications,
            n.blocked_applications
        FROM unnest($1::text[]) AS k(nib)
        CROSS JOIN LATERAL (
            SELECT d.nib, d.region_code, d.outcome, d.reason_codes, d.decision_id, d.seq,
                   d.decided_at, d.policy_version, d.enrolment_as_of, d.event_id
            FROM compliance_decision d
            WHERE d.nib = k.nib AND d.outcome <> 'REJECTED'
            ORDER BY d.seq DESC LIMIT 1
        ) l
        LEFT JOIN permit_application a ON a.event_id = l.event_id
        CROSS JOIN LATERAL (
            SELECT count(*) FILTER (WHERE s.outcome IN ('PENDING', 'BLOCKED'))::integer
                       AS open_applications,
                   count(*) FILTER (WHERE s.outcome = 'BLOCKED')::integer AS blocked_applications
            FROM application_standing s WHERE s.nib = k.nib
        ) n
        CROSS JOIN LATERAL (
            SELECT (array_agg(p.began_at ORDER BY p.began_seq))[1] AS first_flagged_at,
                   max(p.began_at) FILTER (WHERE p.ended_seq IS NULL) AS flagged_since
            FROM compliance_episode p WHERE p.nib = k.nib
        ) e
        ON CONFLICT (nib) DO UPDATE SET {_LATEST_FROM_EXCLUDED}
            first_flagged_at = excluded.first_flagged_at, flagged_since = excluded.flagged_since,
            open_applications = excluded.open_applications,
            blocked_applications = excluded.blocked_applications
        """,
        list(nibs),
    )


async def _episodes(conn: asyncpg.Connection, moved: Walk, skip: set[str]) -> None:
    ended = [(nib, end) for nib, end in moved.ended.items() if nib not in skip]
    if ended:
        await conn.execute(
            """
            UPDATE compliance_episode e SET ended_seq = u.seq, ended_at = u.at,
                ended_decision_id = u.decision_id, ended_outcome = u.outcome, ended_by = u.by
            FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::uuid[], $5::text[],
                $6::text[]) AS u(nib, seq, at, decision_id, outcome, by)
            -- Each open episode found through the index of open episodes, then updated where
            -- it lies: a join on the NIB may be planned as a pass over every episode.
            CROSS JOIN LATERAL (
                SELECT o.ctid AS tid FROM compliance_episode o
                WHERE o.nib = u.nib AND o.ended_seq IS NULL OFFSET 0
            ) o
            WHERE e.ctid = o.tid
            """,
            [nib for nib, _ in ended],
            [end.seq for _, end in ended],
            [end.at for _, end in ended],
            [end.decision_id for _, end in ended],
            [end.outcome for _, end in ended],
            [end.by for _, end in ended],
        )
    began = [e for e in moved.began if e.nib not in skip]
    if began:
        ends = [e.end for e in began]
        await conn.execute(
            """
            INSERT INTO compliance_episode (nib, began_seq, began_at, began_decision_id,
                region_code, reason_codes, ended_seq, ended_at, ended_decision_id, ended_outcome,
                ended_by)
            SELECT u.nib, u.began_seq, u.began_at, u.began_decision_id, u.region_code,
                string_to_array(u.reason_codes, ','), u.ended_seq, u.ended_at,
                u.ended_decision_id, u.ended_outcome, u.ended_by
            FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::uuid[], $5::text[],
                $6::text[], $7::bigint[], $8::timestamptz[], $9::uuid[], $10::text[], $11::text[])
                AS u(nib, began_seq, began_at, began_decision_id, region_code, reason_codes,
                     ended_seq, ended_at, ended_decision_id, ended_outcome, ended_by)
            """,
            [e.nib for e in began],
            [e.began_seq for e in began],
            [e.began_at for e in began],
            [e.began_decision_id for e in began],
            [e.region_code for e in began],
            [",".join(e.reason_codes) for e in began],
            [end.seq if end else None for end in ends],
            [end.at if end else None for end in ends],
            [end.decision_id if end else None for end in ends],
            [end.outcome if end else None for end in ends],
            [end.by if end else None for end in ends],
        )


# --- verification --------------------------------------------------------------------------------

# Each table, the view that recomputes it from the history, and the columns compared.
_COMPARED = {
    "application_standing": (
        "recomputed_application_standing",
        "application_id, nib, region_code, outcome, reason_codes, decision_id, seq, decided_at,"
        " submitted_at",
    ),
    "compliance_episode": (
        "recomputed_compliance_episode",
        "nib, began_seq, began_at, began_decision_id, region_code, reason_codes, ended_seq,"
        " ended_at, ended_decision_id, ended_outcome, ended_by",
    ),
    "employer_compliance": (
        "recomputed_employer_compliance",
        "nib, region_code, employer_name, npwp, outcome, reason_codes, decision_id, seq,"
        " decided_at, policy_version, enrolment_as_of, first_flagged_at, flagged_since,"
        " open_applications, blocked_applications",
    ),
}
_KEY = {
    "application_standing": "application_id",
    "compliance_episode": "nib || ' #' || began_seq",
    "employer_compliance": "nib",
}


@dataclass(frozen=True, slots=True)
class Difference:
    table: str
    rows_stored: int
    missing: int  # rows the recomputation has and the table does not (or has otherwise)
    extra: int  # rows the table has and the recomputation does not (or has otherwise)
    sample: tuple[str, ...]  # keys of a few differing rows (NIBs, application ids)


async def verify(conn: asyncpg.Connection, sample: int = 10) -> list[Difference]:
    """Compare each projection table with its recomputation from the history, in the caller's
    transaction (make it repeatable read, so that both sides see one state)."""
    found = []
    for table, (view, columns) in _COMPARED.items():
        row = await conn.fetchrow(
            f"""
            WITH missing AS (SELECT {columns} FROM {view} EXCEPT ALL SELECT {columns} FROM {table}),
                 extra AS (SELECT {columns} FROM {table} EXCEPT ALL SELECT {columns} FROM {view})
            SELECT (SELECT count(*) FROM {table}) AS stored,
                   (SELECT count(*) FROM missing) AS missing,
                   (SELECT count(*) FROM extra) AS extra,
                   array(SELECT DISTINCT k FROM (
                       SELECT {_KEY[table]} AS k FROM missing
                       UNION ALL SELECT {_KEY[table]} FROM extra) keys
                     ORDER BY k LIMIT $1) AS sample
            """,
            sample,
        )
        found.append(
            Difference(table, row["stored"], row["missing"], row["extra"], tuple(row["sample"]))
        )
    return found


async def rebuild(conn: asyncpg.Connection) -> None:
    """Replace the projection with its recomputation, in one transaction (a savepoint of the
    caller's, if it has one). Writers wait for the table locks, so nothing is decided against a
    half-built projection."""
    async with conn.transaction():
        # Writers queue behind the lock: give up rather than stall them behind a long transaction.
        await conn.execute("SET LOCAL lock_timeout = '10s'")
        await conn.execute(
            """
            LOCK TABLE application_standing, compliance_episode, employer_compliance
                IN ACCESS EXCLUSIVE MODE;
            TRUNCATE application_standing, compliance_episode, employer_compliance;
            INSERT INTO application_standing SELECT * FROM recomputed_application_standing;
            INSERT INTO compliance_episode SELECT * FROM recomputed_compliance_episode;
            INSERT INTO employer_compliance SELECT * FROM recomputed_employer_compliance;
            """
        )
