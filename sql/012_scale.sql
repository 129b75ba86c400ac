-- The applied-batch sequence of the counter protocol (counter_worker/worker.py).
--
-- Redis numbers each application of a batch to a petition's counters (1, 2, 3, ...);
-- a worker acknowledging a batch records here the number Redis gave it. Replication
-- in Redis is asynchronous: a failover, a restore from an old snapshot or a promoted
-- replica can take the counters back in time, after Postgres has deleted the events of
-- what was lost. The numbers show it: Redis behind the highest number acknowledged
-- here, or one number acknowledged for two different batches, means Redis lost
-- applications, and the petition is rebuilt from Postgres.
CREATE TABLE counter_acks (
    petition_id  bigint NOT NULL,
    seq          bigint NOT NULL,
    batch_id     uuid NOT NULL,
    acked_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (petition_id, seq)
);

-- Petitions whose counters Redis got wrong (see above), until a rebuild clears them.
CREATE TABLE counter_divergences (
    petition_id  bigint PRIMARY KEY,
    found_at     timestamptz NOT NULL DEFAULT now()
);
