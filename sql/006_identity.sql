-- Identity of a signer: one hash per mailbox however it is spelled, client address
-- hashes that nobody can reverse once their day's key is gone, names in Unicode NFC.
--
-- The hashes need the secret key, which the database never sees: `countersign migrate`
-- runs this file's data step (countersign_domain/identity_migration.py) right after it,
-- in the same transaction. It hashes every stored address again with the new canonical
-- form, merges the rows of one petition that now share a hash (the deleted rows' -1
-- reach Redis through the usual triggers), and seals the stored IP hashes with their
-- day's key.

-- One random key per UTC day for the IP hashes of that day (countersign_domain/ip_keys.py).
-- The counter worker destroys a key once its day is past the retention window: the row
-- stays, with its key overwritten, to say when.
CREATE TABLE ip_hash_keys (
    day           date PRIMARY KEY,
    key           bytea CHECK (length(key) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    destroyed_at  timestamptz,
    CHECK ((key IS NULL) = (destroyed_at IS NOT NULL))
);

-- Names as new ones are stored: composed and decomposed spellings alike.
UPDATE signatures SET name = normalize(name, NFC)
WHERE name IS NOT NULL AND name IS NOT NFC NORMALIZED;

-- Invalidation criteria and their audit entries quote IP hashes under the secret key
-- alone, which the key reverses by trying every address: they go.
UPDATE invalidations
SET criteria = jsonb_set(criteria, '{ip_hash}', '"removed by migration 006"')
WHERE criteria ? 'ip_hash';
UPDATE audit_log
SET details = jsonb_set(details, '{criteria,ip_hash}', '"removed by migration 006"')
WHERE details -> 'criteria' ? 'ip_hash';

DO $$
BEGIN
    IF current_setting('countersign.data_step', true) IS DISTINCT FROM 'on'
       AND EXISTS (SELECT 1 FROM signatures WHERE email IS NOT NULL OR ip_hash IS NOT NULL)
    THEN
        RAISE EXCEPTION 'stored signatures must be hashed again with the secret key: '
            'run `countersign migrate` with COUNTERSIGN_SECRET_KEY set';
    END IF;
END $$;
