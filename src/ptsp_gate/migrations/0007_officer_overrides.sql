-- Officer overrides: asked by one officer, granted or refused by another, in force until they
-- expire or are revoked. The console writes the request and the answer; the permit checker, which
-- alone writes decisions, re-decides the applications concerned when an override is granted and
-- again when it ends (`applied_at`, `ended_at`).
CREATE TABLE officer_override (
    override_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    scope           text NOT NULL CHECK (scope IN ('APPLICATION', 'EMPLOYER')),
    application_id  text,
    nib             text NOT NULL CHECK (nib ~ '^[0-9]{13}$'),
    region_code     text NOT NULL CHECK (region_code ~ '^[0-9]{4}$'),
    legal_basis     text NOT NULL CHECK (length(legal_basis) BETWEEN 1 AND 500),
    document_ref    text NOT NULL CHECK (length(document_ref) BETWEEN 1 AND 200),
    reason          text NOT NULL CHECK (length(reason) BETWEEN 1 AND 2000),
    expires_at      timestamptz NOT NULL,
    asked_by        bigint NOT NULL REFERENCES officer (officer_id),
    asked_at        timestamptz NOT NULL DEFAULT now(),
    state           text NOT NULL DEFAULT 'ASKED'
                    CHECK (state IN ('ASKED', 'GRANTED', 'REFUSED', 'REVOKED', 'EXPIRED')),
    decided_by      bigint REFERENCES officer (officer_id),
    decided_at      timestamptz,
    decision_note   text CHECK (length(decision_note) <= 2000),
    revoked_by      bigint REFERENCES officer (officer_id),
    revoked_at      timestamptz,
    applied_at      timestamptz,
    ended_at        timestamptz,
    CHECK ((scope = 'APPLICATION') = (application_id IS NOT NULL)),
    CHECK (expires_at > asked_at),
    -- A second person decides: the database refuses what the console checks first.
    CHECK (decided_by <> asked_by),
    CHECK ((state = 'ASKED') = (decided_by IS NULL)),
    CHECK ((state = 'REVOKED') = (revoked_by IS NOT NULL))
);

-- The overrides in force for a batch's applications and employers.
CREATE INDEX officer_override_granted_application ON officer_override (application_id)
    WHERE state = 'GRANTED';
CREATE INDEX officer_override_granted_employer ON officer_override (nib)
    WHERE state = 'GRANTED';
-- The permit checker's work: granted and not yet applied, or ended and not yet re-decided.
CREATE INDEX officer_override_to_settle ON officer_override (expires_at)
    WHERE state = 'GRANTED' OR (state = 'REVOKED' AND ended_at IS NULL);
-- The console's lists: a region's overrides, newest first.
CREATE INDEX officer_override_region ON officer_override (region_code, asked_at DESC);
CREATE INDEX officer_override_nib ON officer_override (nib, asked_at DESC);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ptsp_gate_console') THEN
        GRANT SELECT, INSERT ON officer_override TO ptsp_gate_console;
        GRANT UPDATE (state, decided_by, decided_at, decision_note, revoked_by, revoked_at)
            ON officer_override TO ptsp_gate_console;
    END IF;
END
$$;
