-- The officer console's identities, sessions, API tokens and audit record.

-- A person who uses the console, or a system of the licensing office that calls its API.
CREATE TABLE officer (
    officer_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username        text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,62}$'),
    role            text NOT NULL CHECK (role IN ('officer', 'supervisor', 'auditor', 'admin')),
    -- argon2id (PHC string); NULL for an account that signs in only through single sign-on.
    password_hash   text,
    -- The identity provider's `sub` claim, for single sign-on.
    oidc_subject    text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    disabled_at     timestamptz,
    failed_logins   integer NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    locked_until    timestamptz,
    last_login_at   timestamptz
);

-- The regions an officer works for: every query the console answers is limited to them (an
-- admin's to none).
CREATE TABLE officer_region (
    officer_id      bigint NOT NULL REFERENCES officer ON DELETE CASCADE,
    region_code     text NOT NULL CHECK (region_code ~ '^[0-9]{4}$'),
    PRIMARY KEY (officer_id, region_code)
);

-- Bearer tokens for the API. Only a SHA-256 of the token is kept: the token is random (256
-- bits), so a hash that cannot be reversed needs no salt, and a leaked table grants nothing.
CREATE TABLE api_token (
    token_id        uuid PRIMARY KEY,
    officer_id      bigint NOT NULL REFERENCES officer ON DELETE CASCADE,
    token_hash      bytea NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    last_used_at    timestamptz
);

-- Signed-in browser sessions, by a SHA-256 of the cookie's random value. A session ends at its
-- absolute expiry, after a period without requests, at sign-out, or when its officer is disabled.
CREATE TABLE console_session (
    session_hash    bytea PRIMARY KEY,
    officer_id      bigint NOT NULL REFERENCES officer ON DELETE CASCADE,
    csrf_token      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX console_session_officer ON console_session (officer_id);
CREATE INDEX console_session_expires ON console_session (expires_at);

-- Who did what, when, from where: sign-ins (and failed ones), employers viewed, searches,
-- exports, overrides asked, granted and refused, the audit log read. Append-only: no role may
-- change or remove a row, the table's owner included (the trigger below), so that the record
-- is evidence. Personal identifiers (NPWP, NIK) are never written here; a search by NPWP records
-- the employers it found.
CREATE TABLE audit_event (
    event_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    officer_id      bigint REFERENCES officer,
    -- The username as given: for a failed sign-in it may name no account.
    actor           text NOT NULL,
    action          text NOT NULL,
    -- What was acted on: an NIB, an application id, an override id, a region.
    subject         text,
    -- The regions the event concerns, which decide which auditors read it.
    regions         text[] NOT NULL DEFAULT '{}',
    channel         text NOT NULL CHECK (channel IN ('console', 'api', 'cli')),
    source_address  text,
    detail          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_event_at ON audit_event (at DESC, event_id DESC);
CREATE INDEX audit_event_regions ON audit_event USING gin (regions);
CREATE INDEX audit_event_subject ON audit_event (subject, at DESC) WHERE subject IS NOT NULL;

CREATE FUNCTION audit_event_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_event is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_event_append_only
    BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_event_is_append_only();
CREATE TRIGGER audit_event_no_truncate
    BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_is_append_only();

-- The console's database role: it reads the projection and the accounts, keeps sessions, counts
-- failed sign-ins, and appends to the audit record; it cannot write a decision, change an
-- enrolment or touch the record it appends to. Operators grant it to the console's login role
-- (deploy/README.md). Roles belong to the whole server: a migrating user without CREATEROLE
-- skips this with a notice, and the operator creates the role and runs these grants by hand.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ptsp_gate_console') THEN
        CREATE ROLE ptsp_gate_console NOLOGIN;
    END IF;
EXCEPTION
    WHEN insufficient_privilege OR duplicate_object THEN
        RAISE NOTICE 'role ptsp_gate_console not created (%): create it as deploy/README.md says',
            SQLERRM;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ptsp_gate_console') THEN
        GRANT SELECT ON schema_migration, employer_compliance, compliance_episode,
            application_standing, compliance_decision, employer_enrolment, permit_application,
            officer, officer_region, api_token, console_session, audit_event
            TO ptsp_gate_console;
        GRANT UPDATE (failed_logins, locked_until, last_login_at) ON officer TO ptsp_gate_console;
        GRANT UPDATE (last_used_at) ON api_token TO ptsp_gate_console;
        GRANT INSERT, UPDATE (last_seen_at), DELETE ON console_session TO ptsp_gate_console;
        GRANT INSERT ON audit_event TO ptsp_gate_console;
    END IF;
END
$$;
