-- Replays of dead-lettered records (`ptsp-gate dlq replay`), one row per DLQ record. A replay is
-- claimed (committed) before the record is re-published and marked published once the broker has
-- acknowledged it, so a row left 'claimed' is a replay interrupted in between; the next replay
-- that selects the record publishes it again, and the services dedupe it by ce_id.
CREATE TABLE dlq_replay (
    dlq_topic         text NOT NULL,
    dlq_partition     integer NOT NULL CHECK (dlq_partition >= 0),
    dlq_offset        bigint NOT NULL CHECK (dlq_offset >= 0),
    -- The DLQ record's bytes, so a topic deleted and re-created (offsets start again) cannot pass
    -- a new record off as one already replayed.
    record_digest     text NOT NULL,
    error_code        text,
    event_id          text,
    target_topic      text NOT NULL,
    state             text NOT NULL CHECK (state IN ('claimed', 'published')),
    claimed_at        timestamptz NOT NULL DEFAULT now(),
    claimed_by        text NOT NULL,
    replayed_at       timestamptz,
    target_partition  integer,
    target_offset     bigint,
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset),
    CHECK ((state = 'published') = (replayed_at IS NOT NULL))
);

-- Dead letters used to be recorded as handled under their ce_id, so the same event replayed from
-- the DLQ was dropped as a duplicate. They are now recorded under a digest of their bytes
-- ('sha256:...'); release the ce_ids they took. Accepted application events keep theirs: each has
-- a permit_application row. enrolment-sync records only dead letters here.
DELETE FROM processed_event p
WHERE p.event_key NOT LIKE 'sha256:%'
  AND NOT EXISTS (SELECT 1 FROM permit_application a WHERE a.event_id = p.event_key);
