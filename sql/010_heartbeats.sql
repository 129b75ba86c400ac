-- Heartbeats of the counter workers and mail senders (countersign_core/heartbeats.py).
-- One row per running process, rewritten every few seconds; a row past expires_at is a
-- process that died or wedged without a word. `countersign status` and the API's
-- metrics read them.
CREATE TABLE process_heartbeats (
    process     text PRIMARY KEY,  -- host:pid:random, unique per process start
    kind        text NOT NULL CHECK (kind IN ('counter_worker', 'mail_sender')),
    started_at  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
