-- Double opt-in: petitions that count a signature only once the signer confirms their
-- address, and the queue of confirmation emails that the mail sender delivers.

-- Petitions that exist already keep counting at once (their signers were never asked to
-- confirm); petitions created from now on require confirmation unless told otherwise.
ALTER TABLE petitions ADD COLUMN require_confirmation boolean NOT NULL DEFAULT false;
ALTER TABLE petitions ALTER COLUMN require_confirmation SET DEFAULT true;

-- Pending signatures (confirmed_at IS NULL) are looked up by address when someone asks
-- for a new link, and by age when stale ones are purged. Partial: only pending rows.
CREATE INDEX signatures_pending_by_email ON signatures (email_hash) WHERE confirmed_at IS NULL;
CREATE INDEX signatures_pending_by_age ON signatures (created_at) WHERE confirmed_at IS NULL;

-- Whether a petition takes signatures right now. Statements that write call it in the
-- same snapshot as their writes; a short SQL function, inlined by the planner.
CREATE FUNCTION countersign_petition_open(p petitions) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT p.status = 'open' AND (p.closes_at IS NULL OR p.closes_at > now())
$$;

-- One row per email to send, written in the same transaction as the signature it is
-- about. The address is read from the signature at send time: no copy of it is kept
-- here, and deleting the signature takes its jobs along.
CREATE TABLE email_jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    signature_id     bigint NOT NULL REFERENCES signatures (id) ON DELETE CASCADE,
    kind             text NOT NULL DEFAULT 'confirmation' CHECK (kind IN ('confirmation')),
    -- The n-th email of this kind to this signature. The unique index caps how many go
    -- out even when two requests to re-send race: the second one conflicts.
    sequence         integer NOT NULL CHECK (sequence > 0),
    language         text NOT NULL,
    -- Claims taken, including one by a sender that died before recording the outcome.
    attempts         integer NOT NULL DEFAULT 0,
    -- When the job is due: now for a new job, later after a temporary failure, and the
    -- end of the claim while a sender holds it (a dead sender's job is retaken then).
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- Set at the first claim and kept: a copy sent again after a crash carries the same
    -- Message-ID, so mail systems can drop it.
    message_id       text,
    sent_at          timestamptz,
    -- Given up: a permanent SMTP refusal, too many attempts, or nothing left to confirm.
    failed_at        timestamptz,
    -- An SMTP reply code or a short reason; never an address.
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (signature_id, kind, sequence)
);
CREATE INDEX email_jobs_due ON email_jobs (next_attempt_at, id)
    WHERE sent_at IS NULL AND failed_at IS NULL;

-- How many confirmation emails a signature has had queued, and how many of them are
-- still waiting to go. Another one is queued only while fewer than the limit were and
-- none is waiting: signing twice in a row sends one email, not two.
CREATE FUNCTION countersign_confirmation_emails(signature bigint)
RETURNS TABLE (queued bigint, waiting bigint)
LANGUAGE sql STABLE AS $$
    SELECT count(*), count(*) FILTER (WHERE sent_at IS NULL AND failed_at IS NULL)
    FROM email_jobs WHERE signature_id = signature AND kind = 'confirmation'
$$;

-- Wakes the mail senders. Statement-level: a batch of signatures sends one NOTIFY.
CREATE FUNCTION countersign_email_jobs_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows) THEN
        PERFORM pg_notify('countersign_mail', '');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER email_jobs_notify AFTER INSERT ON email_jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION countersign_email_jobs_inserted();
