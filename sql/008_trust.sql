-- Trust: partners granted per petition, partner figures that follow their own
-- submissions (so they cannot tell whether an address had signed), confirmation emails
-- held back for suspects and by ceilings, and who holds the data.

-- Who holds the signers' data and where its privacy policy is, when a petition says
-- otherwise than the deployment (COUNTERSIGN_DATA_CONTROLLER, COUNTERSIGN_PRIVACY_POLICY_URL).
ALTER TABLE petitions
    ADD COLUMN data_controller text CHECK (length(data_controller) BETWEEN 1 AND 200),
    ADD COLUMN privacy_policy_url text
        CHECK (privacy_policy_url ~ '^https?://[!-~]+$' AND length(privacy_policy_url) <= 2000);

-- A partner works on the petitions it is granted: its key signs and reads only those,
-- and its origins are allowed (CORS, the embed page's frame-ancestors) only on those.
CREATE TABLE partner_grants (
    petition_id  bigint NOT NULL REFERENCES petitions (id),
    partner_id   bigint NOT NULL REFERENCES partners (id),
    granted_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (petition_id, partner_id)
);
CREATE INDEX partner_grants_partner ON partner_grants (partner_id);

-- Partners keep the petitions they already brought signatures to.
INSERT INTO partner_grants (petition_id, partner_id)
SELECT DISTINCT s.petition_id, pa.id
FROM signatures s JOIN partners pa ON pa.source_code = s.source;

-- Each time a signature request carries a partner's code (its key, or the widget's
-- data-source), the partner has submitted that address: one row per partner and
-- signature, whether the request created the signature or found it there already. The
-- partner's figures count these rows, never the signatures themselves, so they move
-- alike whether or not the address had signed. A submission is confirmed by its own
-- email (or at once on a petition that does not ask for confirmation): confirming one
-- never follows from the signer confirming some other email.
CREATE TABLE partner_submissions (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner_id         bigint NOT NULL REFERENCES partners (id),
    signature_id       bigint NOT NULL REFERENCES signatures (id) ON DELETE CASCADE,
    -- This submission's request created the signature (its emails confirm both).
    created_signature  boolean NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    confirmed_at       timestamptz,
    UNIQUE (partner_id, signature_id)
);
CREATE INDEX partner_submissions_signature ON partner_submissions (signature_id);
CREATE INDEX partner_submissions_pending_by_age ON partner_submissions (created_at)
    WHERE confirmed_at IS NULL;

INSERT INTO partner_submissions (partner_id, signature_id, created_signature, created_at,
                                 confirmed_at)
SELECT pa.id, s.id, true, s.created_at, s.confirmed_at
FROM signatures s JOIN partners pa ON pa.source_code = s.source
WHERE s.erased_at IS NULL;

-- The submission a signature came with, if a partner's request created it.
CREATE FUNCTION countersign_creating_submission(signature bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT id FROM partner_submissions WHERE signature_id = signature AND created_signature
$$;

-- An email about a submission confirms that submission (and the signature, if pending).
-- Held: a suspect signature's email, sent only once staff release it. claimed_at: set
-- while a sender holds the job, for the global ceiling's count of emails in flight.
ALTER TABLE email_jobs
    ADD COLUMN submission_id bigint REFERENCES partner_submissions (id) ON DELETE CASCADE,
    ADD COLUMN held boolean NOT NULL DEFAULT false,
    ADD COLUMN claimed_at timestamptz;
CREATE INDEX email_jobs_submission ON email_jobs (submission_id) WHERE submission_id IS NOT NULL;
-- Emails sent within a ceiling's window, and emails in flight.
CREATE INDEX email_jobs_sent ON email_jobs (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX email_jobs_in_flight ON email_jobs (claimed_at)
    WHERE claimed_at IS NOT NULL AND sent_at IS NULL AND failed_at IS NULL;
DROP INDEX email_jobs_due;
CREATE INDEX email_jobs_due ON email_jobs (next_attempt_at, id)
    WHERE sent_at IS NULL AND failed_at IS NULL AND NOT held;
-- Emails held back (a suspect's; those waiting under the per-address ceiling), for the
-- mail sender's metrics.
CREATE INDEX email_jobs_held_back ON email_jobs (id)
    WHERE sent_at IS NULL AND failed_at IS NULL AND (held OR last_error = 'address_ceiling');
