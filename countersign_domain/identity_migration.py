"""The data step of migration ``006_identity.sql``: what SQL cannot do without the key.

1. Email hashes: the canonical form of an address changed (Unicode NFC for the local
   part, IDNA with the UTS #46 mapping for the domain), so every address still stored
   is hashed again. Rows of one petition whose addresses now share a hash were one
   person signing twice: the row that counts (else the confirmed one, else the first)
   stays and the others are deleted, their confirmation emails with them. The delete
   triggers write the -1 of every deleted row that counted, so the worker brings Redis
   to the merged counts, exactly.
2. IP hashes: each stored hash (of the address under the secret-derived key alone) is
   sealed with the key of its day (``countersign_domain.ip_keys``): today's stored key,
   so today's rows group with the signatures still to come; for every earlier day a
   random key that is used here and never stored, so those days are past their
   window at once.

``countersign migrate`` runs it with the file, in the file's transaction; the file
refuses to apply without it when there are rows to rewrite.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from datetime import date

import asyncpg

from countersign_core.migrations import DataStep
from countersign_domain import audit
from countersign_domain.ip_keys import key_of, new_key, utc_today
from countersign_domain.signatures import Hasher

log = logging.getLogger("countersign_domain.identity_migration")

MIGRATION = "006_identity.sql"
BATCH = 10_000

STORED_ADDRESSES = "SELECT id, email, email_hash FROM signatures WHERE email IS NOT NULL"
STORED_IP_HASHES = """
SELECT id, ip_hash, (created_at AT TIME ZONE 'UTC')::date AS day
FROM signatures WHERE ip_hash IS NOT NULL
"""
NEW_HASHES = """
CREATE TEMPORARY TABLE new_hashes (id bigint PRIMARY KEY, hash bytea NOT NULL) ON COMMIT DROP
"""

# Of the rows that now share (petition, hash), all but the one to keep.
DELETE_MERGED = """
WITH touched AS (
    SELECT DISTINCT s.petition_id, n.hash
    FROM new_hashes n JOIN signatures s USING (id)
), after AS (
    SELECT s.id, s.petition_id, coalesce(n.hash, s.email_hash) AS email_hash,
           s.counted, s.confirmed_at, s.created_at
    FROM signatures s LEFT JOIN new_hashes n USING (id)
    WHERE (s.petition_id, coalesce(n.hash, s.email_hash)) IN (SELECT * FROM touched)
), ranked AS (
    SELECT id, row_number() OVER (
        PARTITION BY petition_id, email_hash
        ORDER BY counted DESC, confirmed_at IS NOT NULL DESC, created_at, id
    ) AS rank
    FROM after
)
DELETE FROM signatures WHERE id IN (SELECT id FROM ranked WHERE rank > 1)
RETURNING id
"""
# In two steps, so that no row takes a hash another row has not given up yet.
CLEAR_EMAIL_HASHES = "UPDATE signatures s SET email_hash = NULL FROM new_hashes n WHERE s.id = n.id"
SET_EMAIL_HASHES = "UPDATE signatures s SET email_hash = n.hash FROM new_hashes n WHERE s.id = n.id"
SET_IP_HASHES = "UPDATE signatures s SET ip_hash = n.hash FROM new_hashes n WHERE s.id = n.id"


def data_steps(secret_key: str | None) -> dict[str, DataStep]:
    """The data steps to hand ``migrate``; none without the secret key (the migration then
    applies only to a database with nothing to rewrite)."""
    if secret_key is None:
        return {}
    hasher = Hasher(secret_key)

    async def step(conn: asyncpg.Connection) -> None:
        merged = await rehash_emails(conn, hasher)
        rekeyed = await seal_ip_hashes(conn)
        await audit.record(
            conn,
            "migration",
            "signatures.rehash",
            details={"migration": MIGRATION, "ip_hashes_sealed": rekeyed},
            row_count=merged,
        )
        log.info("re-hashed the stored addresses: %d duplicate signature(s) merged", merged)

    return {MIGRATION: step}


async def _rows(conn: asyncpg.Connection, query: str) -> AsyncIterator[asyncpg.Record]:
    async for row in conn.cursor(query, prefetch=BATCH):
        yield row


async def _load_new_hashes(conn: asyncpg.Connection, records: list[tuple[int, bytes]]) -> None:
    await conn.execute("DROP TABLE IF EXISTS new_hashes")
    await conn.execute(NEW_HASHES)
    await conn.copy_records_to_table("new_hashes", records=records)


async def rehash_emails(conn: asyncpg.Connection, hasher: Hasher) -> int:
    """Hash every stored address again and merge what now collides; returns how many
    rows were merged away."""
    changed = [
        (row["id"], new)
        async for row in _rows(conn, STORED_ADDRESSES)
        if (new := hasher.email(row["email"])) != row["email_hash"]
    ]
    await _load_new_hashes(conn, changed)
    merged = len(await conn.fetch(DELETE_MERGED))
    await conn.execute(CLEAR_EMAIL_HASHES)
    await conn.execute(SET_EMAIL_HASHES)
    return merged


async def seal_ip_hashes(conn: asyncpg.Connection) -> int:
    """Seal every stored IP hash with its day's key; returns how many."""
    today = utc_today()
    keys: dict[date, bytes] = {today: await key_of(conn, today)}
    sealed = [
        (
            row["id"],
            hmac.digest(keys.setdefault(row["day"], new_key()), row["ip_hash"], hashlib.sha256),
        )
        async for row in _rows(conn, STORED_IP_HASHES)
    ]
    keys.clear()  # the earlier days' keys were never stored; now they are gone
    await _load_new_hashes(conn, sealed)
    await conn.execute(SET_IP_HASHES)
    return len(sealed)
