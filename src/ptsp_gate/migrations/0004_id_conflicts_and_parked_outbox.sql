-- A digest of each accepted event's data, so that a second event under the same ce_id with other
-- content is told from a redelivery: the first is dead-lettered as ID_CONFLICT and answered, the
-- second absorbed. Rows recorded before this column existed have none, and a later event under
-- their ce_id is absorbed as it was then.
ALTER TABLE processed_event ADD COLUMN content_digest bytea;

-- Outbox rows the broker refused for a permanent reason (too large, invalid topic, not
-- authorised), moved out of the way so the rows behind them are published. `ptsp-gate outbox
-- retry ID` moves one back to the end of the outbox.
CREATE TABLE outbox_parked (
    id          bigint PRIMARY KEY,  -- the row's id in the outbox
    topic       text NOT NULL,
    key         bytea,
    headers     bytea NOT NULL,
    value       bytea,
    kind        text NOT NULL,
    created_at  timestamptz NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now(),
    error       text NOT NULL
);
