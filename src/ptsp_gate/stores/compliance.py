"""The compliance projection (`application_standing`, `employer_compliance`,
`compliance_episode`), kept current in the transaction that stores each decision, and checked
against its recomputation from the history.

Every writer of decisions (the permit checker, re-deciders after an enrolment update or an import,
the sweep) stores them through `ptsp_gate.stores.decisions.store_decisions`, which calls `lock`
before it inserts, moves the projection in the statement that inserts (`WITH_DECISIONS`), and
calls `settle` after. The lock is per employer (its `employer_compliance` row): while one
transaction holds an employer's, no other inserts a decision about it, so the decisions of one
employer get their `seq` in the order their transactions commit, and each transaction reads the
projection as the previous one left it. That is what lets episodes and counts be maintained
incrementally.

Episodes: an employer is flagged while its latest non-REJECTED decision is BLOCKED. An episode
begins at the decision that makes it BLOCKED and ends at the next one that does not; the decision
that ends it says how: a re-decision (it supersedes another decision) or a new application's first
decision. An episode still open when its blocked applications leave the re-decision window ends by
expiry, which needs no stored change and is computed where reported.

The rule is written twice: here, as a fold of one batch of decisions onto the state the lock
read, and in the migration, as the `recomputed_*` views over the whole history, which
`ptsp-gate projection verify`, the property test and every integration test compare with. Both
are SQL, and a misreading of the rule common to both would pass that comparison; what it does
catch is any fold that does not add up to the whole: seeding, deltas, ordering, concurrency.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import asyncpg


async def lock(
    conn: asyncpg.Connection, nibs: Collection[str], application_ids: Collection[str]
) -> dict[str, bool]:
    """Lock the employers' rows, in NIB order for every transaction (no deadlock between two of
    them): these employers, and those the applications were last decided under (a corrected
    resend may move an application to another NIB, whose counts then change too). Row locks,
    not advisory locks: a national re-decision locks a hundred thousand employers, and row
    locks take no room in the server's shared lock table. An employer without a row yet has
    nothing to lock: two transactions that both make its first row are told apart when they
    write it (`contested` in `WITH_DECISIONS`). Returns the NIBs whose rows are locked, each
    with whether it is flagged, which no other transaction can change before this one ends."""
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


# Appended to the statement that inserts decisions: `inserted` holds the rows it inserted, $15
# the employers `lock` locked and $16 those of them flagged. The batch is folded into the projection
# here, in PostgreSQL, rather than sent back and forth: a batch's rows are already at hand in the
# statement, and every value sent costs the service more than the server its look-up.
WITH_DECISIONS = (
    """
, newest AS (
    -- each application's latest decision in the batch: its standing from now on
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
), deltas AS (
    -- how each employer's open and blocked application counts move
    SELECT nib, sum(open)::integer AS open_delta, sum(blocked)::integer AS blocked_delta
    FROM (
        SELECT nib, (outcome IN ('PENDING', 'BLOCKED'))::integer AS open,
               (outcome = 'BLOCKED')::integer AS blocked
        FROM newest
        UNION ALL
        SELECT nib, -(outcome IN ('PENDING', 'BLOCKED'))::integer,
               -(outcome = 'BLOCKED')::integer
        FROM standing_before
    ) moves
    GROUP BY nib
), steps AS (
    -- the batch's decisions per employer in seq order, each with whether the employer was
    -- flagged just before it: after the previous one, or as the lock found it
    SELECT i.*, coalesce(
               lag(i.outcome = 'BLOCKED') OVER (PARTITION BY i.nib ORDER BY i.seq),
               f.nib IS NOT NULL
           ) AS was_flagged
    FROM inserted i
    LEFT JOIN (SELECT DISTINCT unnest($16::text[]) AS nib) f ON f.nib = i.nib
    WHERE i.outcome <> 'REJECTED' AND i.nib IS NOT NULL
), turns AS (
    -- the decisions that begin or end an episode (they alternate), each with the next one
    SELECT t.*, row_number() OVER w AS nth,
           lead(t.seq) OVER w AS next_seq, lead(t.decided_at) OVER w AS next_at,
           lead(t.decision_id) OVER w AS next_decision_id, lead(t.outcome) OVER w AS next_outcome,
           lead(CASE WHEN t.supersedes IS NULL THEN 'NEW_APPLICATION' ELSE 'REDECISION' END)
               OVER w AS next_by
    FROM steps t
    WHERE (t.outcome = 'BLOCKED') <> t.was_flagged
    WINDOW w AS (PARTITION BY t.nib ORDER BY t.seq)
), flag_times AS (
    SELECT nib, (array_agg(decided_at ORDER BY seq))[1] AS first_began,
           max(decided_at) FILTER (WHERE next_seq IS NULL) AS open_began
    FROM turns WHERE outcome = 'BLOCKED'
    GROUP BY nib
), latest AS (
    SELECT DISTINCT ON (nib) * FROM steps ORDER BY nib, seq DESC
), employers AS (
    -- the latest decision is the batch's last one (the lock guarantees no later one exists;
    -- an employer it could not lock is settled afterwards);
    -- counts move by the deltas; the flagged times come from the turns or stay as they were
    """
    + _UPSERT_EMPLOYER
    + """
    SELECT l.nib, l.region_code, a.payload -> 'employer' ->> 'name', a.npwp, l.outcome,
        l.reason_codes, l.decision_id, l.seq, l.decided_at, l.policy_version,
        l.enrolment_as_of, f.first_began, f.open_began, coalesce(d.open_delta, 0),
        coalesce(d.blocked_delta, 0)
    FROM latest l
    LEFT JOIN flag_times f ON f.nib = l.nib
    LEFT JOIN deltas d ON d.nib = l.nib
    LEFT JOIN LATERAL (
        SELECT p.payload, p.npwp FROM permit_application p WHERE p.event_id = l.event_id
        OFFSET 0
    ) a ON true
    ON CONFLICT (nib) DO UPDATE SET """
    + _LATEST_FROM_EXCLUDED
    + """
        first_flagged_at = coalesce(c.first_flagged_at, excluded.first_flagged_at),
        flagged_since = CASE WHEN excluded.outcome = 'BLOCKED'
                             THEN coalesce(excluded.flagged_since, c.flagged_since) END,
        open_applications = c.open_applications + excluded.open_applications,
        blocked_applications = c.blocked_applications + excluded.blocked_applications
    RETURNING nib, xmax <> 0 AS updated
), contested AS (
    -- employers without a row when locked whose row another transaction wrote meanwhile: both
    -- decided about a new employer at once, so this fold did not start where that one left
    -- off. Their episodes are not written here; `settle` recomputes them.
    SELECT e.nib FROM employers e
    WHERE e.updated AND NOT EXISTS (SELECT FROM unnest($15::text[]) k(nib) WHERE k.nib = e.nib)
), moved_away AS (
    -- employers an application moved away from (a corrected resend): only their counts change
    UPDATE employer_compliance c
    SET open_applications = c.open_applications + d.open_delta,
        blocked_applications = c.blocked_applications + d.blocked_delta
    FROM deltas d
    CROSS JOIN LATERAL (
        SELECT x.ctid AS tid FROM employer_compliance x WHERE x.nib = d.nib OFFSET 0
    ) x
    WHERE c.ctid = x.tid AND (d.open_delta <> 0 OR d.blocked_delta <> 0)
      AND NOT EXISTS (SELECT FROM latest l WHERE l.nib = d.nib)
    RETURNING c.nib
), ended AS (
    -- the episode open before the batch, ended by the employer's first turn
    UPDATE compliance_episode e
    SET ended_seq = t.seq, ended_at = t.decided_at, ended_decision_id = t.decision_id,
        ended_outcome = t.outcome,
        ended_by = CASE WHEN t.supersedes IS NULL THEN 'NEW_APPLICATION' ELSE 'REDECISION' END
    FROM turns t
    -- found through the index of open episodes, then updated where it lies: a join on the NIB
    -- may be planned as a pass over every episode
    CROSS JOIN LATERAL (
        SELECT o.ctid AS tid FROM compliance_episode o
        WHERE o.nib = t.nib AND o.ended_seq IS NULL OFFSET 0
    ) o
    WHERE e.ctid = o.tid AND t.nth = 1 AND t.outcome <> 'BLOCKED'
      AND NOT EXISTS (SELECT FROM contested k WHERE k.nib = t.nib)
    RETURNING e.nib
), began AS (
    INSERT INTO compliance_episode (nib, began_seq, began_at, began_decision_id, region_code,
        reason_codes, ended_seq, ended_at, ended_decision_id, ended_outcome, ended_by)
    SELECT t.nib, t.seq, t.decided_at, t.decision_id, t.region_code, t.reason_codes,
        t.next_seq, t.next_at, t.next_decision_id, t.next_outcome, t.next_by
    FROM turns t
    WHERE t.outcome = 'BLOCKED' AND NOT EXISTS (SELECT FROM contested k WHERE k.nib = t.nib)
      -- Only once the episodes they follow are ended (at most one is open per employer, a
      -- unique index): the sub-statements of a WITH run in no order of their own, but this
      -- condition is an InitPlan, evaluated before the first row is inserted, and it reads
      -- `ended` to its end, which runs that UPDATE to completion.
      AND (SELECT count(*) FROM ended) >= 0
    RETURNING nib
)
"""
)

# The columns the statement returns, besides the inserted decision's id, for `settle`.
SETTLE_COLUMNS = """
    i.application_id, b.nib AS nib_before,
    -- no standing was read, yet another transaction's row was there when ours came
    n.application_id IS NOT NULL AND b.application_id IS NULL
        AND coalesce(u.replaced, true) AS raced,
    k.nib IS NOT NULL AS contested
"""
SETTLE_JOINS = """
    LEFT JOIN standing_before b ON b.application_id = i.application_id
    LEFT JOIN newest n ON n.decision_id = i.decision_id
    LEFT JOIN standing u ON u.application_id = i.application_id
    LEFT JOIN contested k ON k.nib = i.nib
"""


async def settle(
    conn: asyncpg.Connection, inserted: Sequence[asyncpg.Record], covered: Collection[str]
) -> None:
    """After the statement that inserted the decisions and moved the projection (`inserted`:
    its rows), recompute from the history the employers it could not fold in exactly: those
    whose first row another transaction wrote meanwhile, and those of applications another
    transaction decided under another NIB at the same time. `covered`: the employers `lock`
    locked and those of the decisions stored."""
    contested = {r["nib"] for r in inserted if r["contested"]}
    # An application last decided under an employer the lock did not take: its standing
    # changed between the lock and the insert.
    raced = {
        r["application_id"]
        for r in inserted
        if r["raced"] or (r["nib_before"] is not None and r["nib_before"] not in covered)
    }
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
