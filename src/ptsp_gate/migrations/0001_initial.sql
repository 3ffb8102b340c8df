-- Enrolment projection: the latest state BPJS TK reported for each employer (NIB).
CREATE TABLE employer_enrolment (
    nib                 text PRIMARY KEY,
    npwp                text NOT NULL,
    npp                 text NOT NULL,
    status              text NOT NULL,
    segment             text NOT NULL,
    programs            text[] NOT NULL,
    workers_enrolled    integer NOT NULL,
    arrears_months      integer NOT NULL,
    pds_flags           text[] NOT NULL,
    sanction_requested  boolean NOT NULL,
    as_of               timestamptz NOT NULL,
    version             bigint NOT NULL,
    source              text NOT NULL,
    source_event_id     text,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Idempotency: one row per input event already handled (ce_id, or a digest for unreadable ones).
CREATE TABLE processed_event (
    topic         text NOT NULL,
    event_key     text NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, event_key)
);

-- Every accepted application event; application_id may repeat (a corrected resend).
CREATE TABLE permit_application (
    event_id          text PRIMARY KEY,
    application_id    text NOT NULL,
    action            text NOT NULL,
    nib               text NOT NULL,
    npwp              text NOT NULL,
    region_code       text NOT NULL,
    scale             text NOT NULL,
    workers_declared  integer NOT NULL,
    submitted_at      timestamptz NOT NULL,
    received_at       timestamptz NOT NULL DEFAULT now(),
    payload           jsonb NOT NULL
);
CREATE INDEX permit_application_application_id ON permit_application (application_id);
CREATE INDEX permit_application_nib ON permit_application (nib);

-- Append-only decision history; seq gives a total order that timestamps cannot.
CREATE TABLE compliance_decision (
    seq                 bigserial UNIQUE,
    decision_id         uuid PRIMARY KEY,
    event_id            text NOT NULL,
    application_id      text NOT NULL,
    nib                 text,
    action              text,
    region_code         text,
    outcome             text NOT NULL,
    reason_codes        text[] NOT NULL,
    reasons             jsonb NOT NULL,
    enrolment_as_of     timestamptz,
    enrolment_version   bigint,
    policy_version      text NOT NULL,
    decided_at          timestamptz NOT NULL,
    supersedes          uuid REFERENCES compliance_decision (decision_id)
);
CREATE INDEX compliance_decision_nib_seq ON compliance_decision (nib, seq DESC);
CREATE INDEX compliance_decision_application_seq ON compliance_decision (application_id, seq DESC);

-- Transactional outbox: rows are published in id order by a single relay, then deleted.
CREATE TABLE outbox (
    id             bigserial PRIMARY KEY,
    topic          text NOT NULL,
    key            bytea,
    headers        bytea NOT NULL,
    value          bytea,
    kind           text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Employers whose latest (non-rejected) decision is BLOCKED: what a compliance officer works on.
CREATE VIEW flagged_employer AS
WITH latest_per_application AS (
    SELECT DISTINCT ON (application_id) *
    FROM compliance_decision
    WHERE outcome <> 'REJECTED' AND nib IS NOT NULL
    ORDER BY application_id, seq DESC
),
latest_per_employer AS (
    SELECT DISTINCT ON (nib) *
    FROM compliance_decision
    WHERE outcome <> 'REJECTED' AND nib IS NOT NULL
    ORDER BY nib, seq DESC
)
SELECT
    e.nib,
    e.region_code,
    e.reason_codes,
    e.policy_version,
    e.enrolment_as_of,
    (SELECT min(d.decided_at) FROM compliance_decision d
      WHERE d.nib = e.nib AND d.outcome = 'BLOCKED')                AS first_flagged_at,
    e.decided_at                                                     AS last_flagged_at,
    (SELECT count(*) FROM latest_per_application a
      WHERE a.nib = e.nib AND a.outcome = 'BLOCKED')                 AS blocked_applications
FROM latest_per_employer e
WHERE e.outcome = 'BLOCKED';
