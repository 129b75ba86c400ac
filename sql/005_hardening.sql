-- Hardening: when each counter event was written (for the worker's commit-to-Redis lag
-- metric), and a partial index for staff reviewing suspect signatures.

-- clock_timestamp(), not now(): a long transaction's events are stamped when written,
-- close to their commit, not when the transaction began.
ALTER TABLE counter_events ADD COLUMN created_at timestamptz NOT NULL DEFAULT clock_timestamp();

-- `countersign suspects list` and the admin review read suspects of one petition in
-- id order; they are few among many rows.
CREATE INDEX signatures_suspects ON signatures (petition_id, id)
    WHERE suspect_reason IS NOT NULL;
