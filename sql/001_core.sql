-- Petitions, signatures, and the counter event log the worker drains into Redis.

CREATE TABLE petitions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,99}$'),
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 300),
    body        text NOT NULL DEFAULT '',
    target      text NOT NULL DEFAULT '',
    goal        integer NOT NULL DEFAULT 1000 CHECK (goal > 0),
    status      text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'open', 'closed')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    closes_at   timestamptz,
    -- Web origins (https://example.org) whose pages may embed the widget and call the
    -- API from the browser; '*' allows any, for open campaigns.
    allowed_origins text[] NOT NULL DEFAULT '{}'
);

-- Whether a signature counts is one generated column, so that the triggers below (and
-- every GROUP BY that checks Redis) ask one question: did this row count before, does it
-- count now. Each reason not to count is its own column, so undoing one (releasing a
-- suspect, undoing an invalidation) restores whatever the others say.
CREATE TABLE signatures (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    petition_id      bigint NOT NULL REFERENCES petitions (id),
    name             text NOT NULL,
    email            text NOT NULL,
    -- HMAC of the canonical address: duplicates and erasure look rows up by it, so the
    -- canonical form itself is never stored.
    email_hash       bytea NOT NULL,
    country          char(2) NOT NULL,
    postal_code      text,
    source           text,
    consent_updates  boolean NOT NULL DEFAULT false,
    ip_hash          bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- NULL while the signer has not confirmed their address (double opt-in).
    confirmed_at     timestamptz DEFAULT now(),
    -- Set when abuse checks flag it: stored, not counted, until staff release it.
    suspect_reason   text,
    -- Set when staff invalidate it (fraud); cleared by undo.
    invalidated_at   timestamptz,
    invalid_reason   text,
    -- Set when the signer's personal data was erased on request.
    erased_at        timestamptz,
    counted          boolean NOT NULL GENERATED ALWAYS AS (
        confirmed_at IS NOT NULL AND suspect_reason IS NULL
        AND invalidated_at IS NULL AND erased_at IS NULL
    ) STORED,
    UNIQUE (petition_id, email_hash)
);

-- Deltas waiting to reach Redis. Written only by the triggers below, in the same
-- transaction as the change they describe; deleted by the worker once applied.
CREATE TABLE counter_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    petition_id  bigint NOT NULL,
    country      char(2) NOT NULL,
    source       text NOT NULL,
    delta        integer NOT NULL,
    batch_id     uuid,
    claimed_at   timestamptz
);
CREATE INDEX counter_events_unclaimed ON counter_events (petition_id, id) WHERE batch_id IS NULL;
CREATE INDEX counter_events_unclaimed_order ON counter_events (id) WHERE batch_id IS NULL;
CREATE INDEX counter_events_batch ON counter_events (batch_id) WHERE batch_id IS NOT NULL;

-- Statement-level triggers with transition tables: a batched INSERT of 500 rows writes
-- one event per (petition, country, source) and sends one NOTIFY, not 500 of each.
CREATE FUNCTION countersign_signatures_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO counter_events (petition_id, country, source, delta)
    SELECT petition_id, country, coalesce(source, ''), count(*)
    FROM new_rows WHERE counted
    GROUP BY 1, 2, 3;
    IF FOUND THEN
        PERFORM pg_notify('countersign_events', '');
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION countersign_signatures_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO counter_events (petition_id, country, source, delta)
    SELECT petition_id, country, source, sum(delta)
    FROM (
        SELECT petition_id, country, coalesce(source, '') AS source, -1 AS delta
        FROM old_rows WHERE counted
        UNION ALL
        SELECT petition_id, country, coalesce(source, ''), 1
        FROM new_rows WHERE counted
    ) AS changes
    GROUP BY 1, 2, 3
    HAVING sum(delta) <> 0;
    IF FOUND THEN
        PERFORM pg_notify('countersign_events', '');
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION countersign_signatures_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO counter_events (petition_id, country, source, delta)
    SELECT petition_id, country, coalesce(source, ''), -count(*)
    FROM old_rows WHERE counted
    GROUP BY 1, 2, 3;
    IF FOUND THEN
        PERFORM pg_notify('countersign_events', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER signatures_count_insert AFTER INSERT ON signatures
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION countersign_signatures_inserted();
CREATE TRIGGER signatures_count_update AFTER UPDATE ON signatures
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION countersign_signatures_updated();
CREATE TRIGGER signatures_count_delete AFTER DELETE ON signatures
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION countersign_signatures_deleted();

-- TRUNCATE would bypass the event log and leave Redis counting rows that are gone.
CREATE FUNCTION countersign_refuse_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'TRUNCATE of signatures bypasses the live counters; use DELETE';
END $$;
CREATE TRIGGER signatures_no_truncate BEFORE TRUNCATE ON signatures
    FOR EACH STATEMENT EXECUTE FUNCTION countersign_refuse_truncate();

-- A new petition needs its Redis counters built before they can be served.
CREATE FUNCTION countersign_petition_created() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('countersign_events', 'petitions');
    RETURN NULL;
END $$;
CREATE TRIGGER petitions_created AFTER INSERT ON petitions
    FOR EACH STATEMENT EXECUTE FUNCTION countersign_petition_created();
