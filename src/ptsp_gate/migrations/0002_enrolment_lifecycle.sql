-- A region whose complete BPJS TK snapshot has been loaded: from its date on, a missing record
-- can mean "not registered" where the region's policy says so.
CREATE TABLE region_snapshot (
    region_code     text PRIMARY KEY,
    complete_as_of  timestamptz NOT NULL,
    source_file     text NOT NULL,
    rows_in_file    bigint NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);

-- One row per bulk import run, for operators and for the services' metrics.
CREATE TABLE enrolment_import (
    id              bigserial PRIMARY KEY,
    source_file     text NOT NULL,
    region_code     text,
    complete        boolean NOT NULL,
    rows_read       bigint NOT NULL,
    rows_applied    bigint NOT NULL,
    rows_stale      bigint NOT NULL,
    rows_rejected   bigint NOT NULL,
    redecisions     bigint NOT NULL,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz NOT NULL
);

-- Re-decisions look up an employer's open applications; the sweep looks up recent PENDING ones.
CREATE INDEX compliance_decision_open ON compliance_decision (nib, decided_at)
    WHERE outcome IN ('PENDING', 'BLOCKED');
