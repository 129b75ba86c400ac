-- The signature log (README, "A count anyone can verify"): every change to what counts
-- becomes a leaf of an append-only Merkle tree per petition, and the counter worker
-- signs each new tree head. A leaf holds a commitment to the signature, the kind of
-- change, its hour and, for invalidations, how staff picked the signatures: nothing
-- personal. countersign_domain/signature_log/ builds and reads it.

-- Each signature's receipt secret opens its commitment; the signer gets it in their
-- receipt. 16 bytes from gen_random_uuid(), which draws from the server's strong random
-- source (122 of its 128 bits are random). Erasure destroys it (trigger below).
ALTER TABLE signatures ADD COLUMN receipt_secret bytea;
ALTER TABLE signatures ALTER COLUMN receipt_secret SET DEFAULT uuid_send(gen_random_uuid());
UPDATE signatures SET receipt_secret = uuid_send(gen_random_uuid()) WHERE erased_at IS NULL;

-- SHA-256("countersign commitment v1" || signature id || secret), as
-- countersign_domain/signature_log/leaves.py computes it. A signature without a secret
-- (set to NULL by hand) gets a commitment nobody can open, rather than failing the
-- statement that changed it.
CREATE FUNCTION countersign_commitment(signature bigint, secret bytea) RETURNS bytea
LANGUAGE sql VOLATILE AS $$
    SELECT sha256(convert_to('countersign commitment v1', 'UTF8') || int8send(signature)
                  || coalesce(secret, uuid_send(gen_random_uuid())))
$$;

-- The public reason class of an invalidation: which criteria picked its signatures
-- (never its free-text reason, which may name people). 'other' without an invalidation
-- row (an invalidation written by hand).
CREATE FUNCTION countersign_reason_class(invalidation bigint) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT string_agg(DISTINCT class, '+' ORDER BY class)
         FROM (SELECT CASE key
                          WHEN 'ip_hash' THEN 'network'
                          WHEN 'email_domain' THEN 'email_domain'
                          WHEN 'source' THEN 'source'
                          WHEN 'signed_after' THEN 'time'
                          WHEN 'signed_before' THEN 'time'
                          ELSE 'other'
                      END AS class
               FROM invalidations i CROSS JOIN LATERAL jsonb_object_keys(i.criteria) AS key
               WHERE i.id = invalidation) AS classes),
        'other')
$$;

-- Changes to what counts, waiting to become leaves. Written only by the triggers below,
-- in the same transaction as the change; deleted by the worker in the transaction that
-- appends their leaves, so each becomes exactly one leaf whatever crashes.
CREATE TABLE log_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    petition_id   bigint NOT NULL,
    signature_id  bigint NOT NULL,
    kind          text NOT NULL
                  CHECK (kind IN ('counted', 'invalidated', 'restored', 'erased', 'removed')),
    reason_class  text,
    commitment    bytea NOT NULL,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX log_events_by_petition ON log_events (petition_id, id);

-- A signature starts to count: on insert (petitions that count at once), or later
-- (confirmed, released, an invalidation undone); it stops: invalidated, erased, or
-- anything else (deleted, changed by hand). A signature moved to another petition by
-- hand leaves the first log and joins the second.
CREATE FUNCTION countersign_log_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO log_events (petition_id, signature_id, kind, commitment)
    SELECT petition_id, id, 'counted', countersign_commitment(id, receipt_secret)
    FROM new_rows WHERE counted
    ORDER BY id;
    RETURN NULL;
END $$;

CREATE FUNCTION countersign_log_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO log_events (petition_id, signature_id, kind, reason_class, commitment)
    SELECT petition_id, id, kind, reason_class, commitment FROM (
        SELECT o.petition_id, o.id, change.kind,
               CASE WHEN change.kind = 'invalidated'
                    THEN countersign_reason_class(n.invalidation_id) END AS reason_class,
               countersign_commitment(o.id, o.receipt_secret) AS commitment
        FROM old_rows o JOIN new_rows n USING (id)
        CROSS JOIN LATERAL (SELECT CASE
            WHEN n.erased_at IS NOT NULL AND o.erased_at IS NULL THEN 'erased'
            WHEN n.invalidated_at IS NOT NULL AND o.invalidated_at IS NULL
                 AND n.petition_id = o.petition_id THEN 'invalidated'
            ELSE 'removed' END AS kind) AS change
        WHERE o.counted AND (NOT n.counted OR n.petition_id <> o.petition_id)
        UNION ALL
        SELECT n.petition_id, n.id, change.kind,
               CASE WHEN change.kind = 'restored'
                    THEN countersign_reason_class(o.invalidation_id) END,
               countersign_commitment(n.id, coalesce(n.receipt_secret, o.receipt_secret))
        FROM old_rows o JOIN new_rows n USING (id)
        CROSS JOIN LATERAL (SELECT CASE
            WHEN o.invalidated_at IS NOT NULL AND n.invalidated_at IS NULL
                 AND n.petition_id = o.petition_id THEN 'restored'
            ELSE 'counted' END AS kind) AS change
        WHERE n.counted AND (NOT o.counted OR n.petition_id <> o.petition_id)
    ) AS changes
    ORDER BY id, kind DESC;
    RETURN NULL;
END $$;

CREATE FUNCTION countersign_log_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO log_events (petition_id, signature_id, kind, commitment)
    SELECT petition_id, id, 'removed', countersign_commitment(id, receipt_secret)
    FROM old_rows WHERE counted
    ORDER BY id;
    RETURN NULL;
END $$;

CREATE TRIGGER signatures_log_insert AFTER INSERT ON signatures
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION countersign_log_inserted();
CREATE TRIGGER signatures_log_update AFTER UPDATE ON signatures
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION countersign_log_updated();
CREATE TRIGGER signatures_log_delete AFTER DELETE ON signatures
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION countersign_log_deleted();

-- Erasure destroys the receipt secret: the leaves stay (the count stays verifiable), and
-- nothing on the server opens them any more. The update trigger above reads the secret
-- from the row as it was, so the erasure's own leaf still carries the same commitment.
CREATE FUNCTION countersign_erase_receipt() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.receipt_secret := NULL;
    RETURN NEW;
END $$;
CREATE TRIGGER signatures_erase_receipt BEFORE UPDATE OF erased_at ON signatures
    FOR EACH ROW WHEN (NEW.erased_at IS NOT NULL)
    EXECUTE FUNCTION countersign_erase_receipt();

-- Where each petition's log stands; the worker appending to it holds this row's lock.
CREATE TABLE log_state (
    petition_id  bigint PRIMARY KEY REFERENCES petitions (id),
    tree_size    bigint NOT NULL DEFAULT 0,
    counted      bigint NOT NULL DEFAULT 0,
    -- Invalidated and not restored, by reason class: {"network": 12}.
    invalidated  jsonb NOT NULL DEFAULT '{}',
    erased       bigint NOT NULL DEFAULT 0,
    removed      bigint NOT NULL DEFAULT 0
);

-- The leaves, as encoded bytes (leaves.py). The primary key makes a second leaf at the
-- same index impossible: a batch appended twice fails instead of doubling.
CREATE TABLE log_leaves (
    petition_id  bigint NOT NULL REFERENCES petitions (id),
    leaf_index   bigint NOT NULL CHECK (leaf_index >= 0),
    leaf         bytea NOT NULL,
    -- The leaf's commitment again, for receipts to find their leaves.
    commitment   bytea NOT NULL,
    PRIMARY KEY (petition_id, leaf_index)
);
CREATE INDEX log_leaves_by_commitment ON log_leaves (petition_id, commitment);

-- Every complete subtree's hash: node (level, position) covers leaves
-- [position * 2^level, (position + 1) * 2^level); level 0 are the leaf hashes. Any
-- proof is a few of these (merkle.py).
CREATE TABLE log_nodes (
    petition_id  bigint NOT NULL REFERENCES petitions (id),
    level        smallint NOT NULL CHECK (level BETWEEN 0 AND 62),
    position     bigint NOT NULL CHECK (position >= 0),
    hash         bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (petition_id, level, position)
);

-- Every signed tree head, kept. The totals are the leaves' own (the summary of the head).
CREATE TABLE log_heads (
    petition_id  bigint NOT NULL REFERENCES petitions (id),
    tree_size    bigint NOT NULL CHECK (tree_size > 0),
    root_hash    bytea NOT NULL,
    signed_at    timestamptz NOT NULL,
    counted      bigint NOT NULL,
    invalidated  jsonb NOT NULL,
    erased       bigint NOT NULL,
    removed      bigint NOT NULL,
    key_name     text NOT NULL,
    -- The signed checkpoint as served (heads.py).
    note         text NOT NULL,
    PRIMARY KEY (petition_id, tree_size)
);

-- The public keys that signed heads, served at /v1/log/public-key.
CREATE TABLE log_keys (
    name           text PRIMARY KEY,
    public_key     bytea NOT NULL UNIQUE,
    vkey           text NOT NULL,
    first_used_at  timestamptz NOT NULL DEFAULT now()
);

-- Append-only: what was published is never changed or taken back.
CREATE FUNCTION countersign_refuse_log_rewrite() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the signature log is append-only (% on %)', TG_OP, TG_TABLE_NAME;
END $$;
CREATE TRIGGER log_leaves_append_only BEFORE UPDATE OR DELETE ON log_leaves
    FOR EACH ROW EXECUTE FUNCTION countersign_refuse_log_rewrite();
CREATE TRIGGER log_leaves_no_truncate BEFORE TRUNCATE ON log_leaves
    FOR EACH STATEMENT EXECUTE FUNCTION countersign_refuse_log_rewrite();
CREATE TRIGGER log_nodes_append_only BEFORE UPDATE OR DELETE ON log_nodes
    FOR EACH ROW EXECUTE FUNCTION countersign_refuse_log_rewrite();
CREATE TRIGGER log_nodes_no_truncate BEFORE TRUNCATE ON log_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION countersign_refuse_log_rewrite();
CREATE TRIGGER log_heads_append_only BEFORE UPDATE OR DELETE ON log_heads
    FOR EACH ROW EXECUTE FUNCTION countersign_refuse_log_rewrite();
CREATE TRIGGER log_heads_no_truncate BEFORE TRUNCATE ON log_heads
    FOR EACH STATEMENT EXECUTE FUNCTION countersign_refuse_log_rewrite();

-- Signatures that count already start their petitions' logs, in the order they began
-- to count.
INSERT INTO log_events (petition_id, signature_id, kind, commitment, at)
SELECT petition_id, id, 'counted', countersign_commitment(id, receipt_secret),
       coalesce(confirmed_at, created_at)
FROM signatures WHERE counted
ORDER BY coalesce(confirmed_at, created_at), id;
