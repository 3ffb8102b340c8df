-- The compliance projection: what officers query, kept current in the transaction that stores each
-- decision (ptsp_gate.stores.compliance), so that a question costs what it returns instead of a
-- pass over the whole decision history.

-- The latest non-REJECTED decision of each application.
CREATE TABLE application_standing (
    application_id   text PRIMARY KEY,
    nib              text NOT NULL,
    region_code      text,
    outcome          text NOT NULL,
    reason_codes     text[] NOT NULL,
    decision_id      uuid NOT NULL,
    seq              bigint NOT NULL,
    decided_at       timestamptz NOT NULL,
    submitted_at     timestamptz
) WITH (fillfactor = 80);
CREATE INDEX application_standing_nib ON application_standing (nib, outcome, submitted_at);

-- Flagged episodes: an employer is flagged from a decision that makes its standing BLOCKED until
-- a later decision makes it anything else. Rows are added when an episode begins and completed
-- once when it ends; nothing else changes them. The decision that ended it says how: a
-- re-decision (it supersedes another) or a new application's first decision. An episode left
-- open once all the employer's blocked applications are older than the re-decision window has
-- ended by expiry, which needs no row change: reports compute it from the applications'
-- `submitted_at` and the window in force when they are asked.
CREATE TABLE compliance_episode (
    nib                 text NOT NULL,
    began_seq           bigint NOT NULL,
    began_at            timestamptz NOT NULL,
    began_decision_id   uuid NOT NULL,
    region_code         text,
    reason_codes        text[] NOT NULL,
    ended_seq           bigint,
    ended_at            timestamptz,
    ended_decision_id   uuid,
    ended_outcome       text,
    ended_by            text CHECK (ended_by IN ('REDECISION', 'NEW_APPLICATION')),
    PRIMARY KEY (nib, began_seq),
    CHECK ((ended_seq IS NULL) = (ended_by IS NULL))
);
CREATE UNIQUE INDEX compliance_episode_open ON compliance_episode (nib) WHERE ended_seq IS NULL;
CREATE INDEX compliance_episode_began ON compliance_episode (began_at);

-- Each employer's current standing: its latest non-REJECTED decision, the name and NPWP it last
-- applied with (for look-up only; never listed), and its applications' counts.
CREATE TABLE employer_compliance (
    nib                        text PRIMARY KEY,
    region_code                text,
    employer_name              text,
    npwp                       text,
    outcome                    text NOT NULL,
    reason_codes               text[] NOT NULL,
    decision_id                uuid NOT NULL,
    seq                        bigint NOT NULL,
    decided_at                 timestamptz NOT NULL,
    policy_version             text NOT NULL,
    enrolment_as_of            timestamptz,
    first_flagged_at           timestamptz,
    flagged_since              timestamptz,
    open_applications          integer NOT NULL,
    blocked_applications       integer NOT NULL
) WITH (fillfactor = 70);
-- The flagged list's order, so that a page is an index range scan from its cursor.
CREATE INDEX employer_compliance_flagged
    ON employer_compliance (region_code, first_flagged_at, nib) WHERE outcome = 'BLOCKED';
CREATE INDEX employer_compliance_npwp ON employer_compliance (npwp);
-- Name search (`ptsp-gate employer --name`) is a case-insensitive substring match, which a
-- trigram index answers without reading the table. pg_trgm ships with PostgreSQL's contrib
-- modules (Debian's server package has them) and is trusted since PostgreSQL 13, so the database
-- owner may create it. Where it is missing (the embedded development server) or not allowed,
-- the same search reads the table instead: slower at national scale, never wrong.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
        CREATE INDEX employer_compliance_name
            ON employer_compliance USING gin (employer_name gin_trgm_ops);
    ELSE
        RAISE NOTICE 'pg_trgm is not available: employer name search will read the table';
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'not allowed to create pg_trgm: employer name search will read the table';
END
$$;
CREATE INDEX employer_enrolment_npwp ON employer_enrolment (npwp);

-- The projection recomputed from the history alone. The backfill below fills the tables from
-- these views; `ptsp-gate projection verify` compares the tables with them.
CREATE VIEW recomputed_application_standing AS
SELECT DISTINCT ON (d.application_id)
       d.application_id, d.nib, d.region_code, d.outcome, d.reason_codes, d.decision_id, d.seq,
       d.decided_at, a.submitted_at
FROM compliance_decision d
LEFT JOIN permit_application a ON a.event_id = d.event_id
WHERE d.outcome <> 'REJECTED' AND d.nib IS NOT NULL
ORDER BY d.application_id, d.seq DESC;

CREATE VIEW recomputed_compliance_episode AS
WITH standing AS (
    SELECT nib, seq, decided_at, decision_id, region_code, reason_codes, outcome, supersedes,
           outcome = 'BLOCKED' AS flagged,
           coalesce(lag(outcome = 'BLOCKED') OVER (PARTITION BY nib ORDER BY seq), false)
               AS was_flagged
    FROM compliance_decision
    WHERE outcome <> 'REJECTED' AND nib IS NOT NULL
),
changes AS (
    SELECT *,
           lead(seq) OVER w AS next_seq,
           lead(decided_at) OVER w AS next_at,
           lead(decision_id) OVER w AS next_decision_id,
           lead(outcome) OVER w AS next_outcome,
           lead(supersedes IS NOT NULL) OVER w AS next_supersedes
    FROM standing
    WHERE flagged <> was_flagged
    WINDOW w AS (PARTITION BY nib ORDER BY seq)
)
SELECT nib, seq AS began_seq, decided_at AS began_at, decision_id AS began_decision_id,
       region_code, reason_codes, next_seq AS ended_seq, next_at AS ended_at,
       next_decision_id AS ended_decision_id, next_outcome AS ended_outcome,
       CASE WHEN next_seq IS NULL THEN NULL
            WHEN next_supersedes THEN 'REDECISION' ELSE 'NEW_APPLICATION' END AS ended_by
FROM changes
WHERE flagged;

CREATE VIEW recomputed_employer_compliance AS
WITH latest AS (
    SELECT DISTINCT ON (d.nib)
           d.nib, d.region_code, a.payload #>> '{employer,name}' AS employer_name, a.npwp,
           d.outcome, d.reason_codes, d.decision_id, d.seq, d.decided_at, d.policy_version,
           d.enrolment_as_of
    FROM compliance_decision d
    LEFT JOIN permit_application a ON a.event_id = d.event_id
    WHERE d.outcome <> 'REJECTED' AND d.nib IS NOT NULL
    ORDER BY d.nib, d.seq DESC
),
counts AS (
    SELECT nib,
           count(*) FILTER (WHERE outcome IN ('PENDING', 'BLOCKED')) AS open_applications,
           count(*) FILTER (WHERE outcome = 'BLOCKED') AS blocked_applications
    FROM recomputed_application_standing
    GROUP BY nib
),
episodes AS (
    SELECT nib, (array_agg(began_at ORDER BY began_seq))[1] AS first_flagged_at,
           max(began_at) FILTER (WHERE ended_seq IS NULL) AS flagged_since
    FROM recomputed_compliance_episode
    GROUP BY nib
)
SELECT l.nib, l.region_code, l.employer_name, l.npwp, l.outcome, l.reason_codes, l.decision_id,
       l.seq, l.decided_at, l.policy_version, l.enrolment_as_of, e.first_flagged_at,
       e.flagged_since, coalesce(c.open_applications, 0)::integer AS open_applications,
       coalesce(c.blocked_applications, 0)::integer AS blocked_applications
FROM latest l
LEFT JOIN counts c USING (nib)
LEFT JOIN episodes e USING (nib);

-- The backfill: the history that exists before this migration.
INSERT INTO application_standing SELECT * FROM recomputed_application_standing;
INSERT INTO compliance_episode SELECT * FROM recomputed_compliance_episode;
INSERT INTO employer_compliance SELECT * FROM recomputed_employer_compliance;

-- The view officers' scripts may read, now over the projection (same columns as before).
CREATE OR REPLACE VIEW flagged_employer AS
SELECT nib, region_code, reason_codes, policy_version, enrolment_as_of, first_flagged_at,
       decided_at AS last_flagged_at, blocked_applications::bigint AS blocked_applications
FROM employer_compliance
WHERE outcome = 'BLOCKED';
