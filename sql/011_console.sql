-- The staff console (/admin/): staff accounts, one-time sign-in links sent by email,
-- and browser sessions. Links and session ids are stored as sha256 of the secret: both
-- are 256 random bits, so a plain hash is enough and lookups stay exact.

-- A person on the campaign staff. Names are never reused (the audit log names the
-- account), an address belongs to one active account at a time.
CREATE TABLE staff_accounts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 64),
    email       text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    role        text NOT NULL CHECK (role IN ('admin', 'exporter')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    removed_at  timestamptz
);
CREATE UNIQUE INDEX staff_accounts_active_email ON staff_accounts (lower(email))
    WHERE removed_at IS NULL;

-- One emailed sign-in link. The link's secret is an HMAC of ``nonce`` under the secret
-- key (which the database never sees), so the mail sender can write the link and the
-- database alone cannot.
CREATE TABLE staff_sign_in_links (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  bigint NOT NULL REFERENCES staff_accounts (id),
    nonce       bytea NOT NULL,
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);

-- A signed-in browser: opened by an account's link or by a staff token. It ends at
-- ``expires_at`` (absolute), after the idle time without a request, at sign-out, or
-- when its account is removed or its token revoked.
CREATE TABLE staff_sessions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_hash  bytea NOT NULL UNIQUE,
    account_id    bigint REFERENCES staff_accounts (id),
    token_id      bigint REFERENCES staff_tokens (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    CHECK ((account_id IS NULL) <> (token_id IS NULL))
);

-- Sign-in links go out through the same queue and senders as confirmation emails.
ALTER TABLE email_jobs
    ALTER COLUMN signature_id DROP NOT NULL,
    ADD COLUMN sign_in_link_id bigint REFERENCES staff_sign_in_links (id) ON DELETE CASCADE,
    DROP CONSTRAINT email_jobs_kind_check,
    ADD CONSTRAINT email_jobs_kind_check CHECK (kind IN ('confirmation', 'staff_sign_in')),
    ADD CONSTRAINT email_jobs_one_subject CHECK (
        CASE kind
            WHEN 'confirmation' THEN signature_id IS NOT NULL AND sign_in_link_id IS NULL
            ELSE sign_in_link_id IS NOT NULL AND signature_id IS NULL
        END
    );
