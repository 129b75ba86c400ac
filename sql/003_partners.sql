-- Partners: sites and organisations that bring signers. A partner's source code is
-- stamped on the signatures it sends; its allowed origins may call the API from the
-- browser; its API key is stored only as a SHA-256 hash (the key is shown once).

CREATE TABLE partners (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    source_code      text NOT NULL UNIQUE CHECK (source_code ~ '^[a-z0-9_-]{1,64}$'),
    allowed_origins  text[] NOT NULL DEFAULT '{}',
    key_hash         bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    created_at       timestamptz NOT NULL DEFAULT now(),
    revoked_at       timestamptz
);
