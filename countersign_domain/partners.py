"""Partners: the sites and organisations that bring signers, and their API keys.

A partner's key is ``cs_partner_`` plus 32 random bytes (URL-safe base64). Only its
SHA-256 is stored: a key that random cannot be guessed from its hash, so no slow hash
is needed, and lookups stay one indexed equality. The key is shown once, at creation.

With the key, a partner signs server to server (``Authorization: Bearer <key>`` on the
usual sign endpoint, the source forced to the partner's code) and reads how many
signatures its source brought (``GET /v1/partner/counts?petition=slug``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from cachetools import TTLCache

KEY_PREFIX = "cs_partner_"

INSERT_PARTNER = """
INSERT INTO partners (name, source_code, allowed_origins, key_hash)
VALUES ($1, $2, $3, $4)
RETURNING id, name, source_code, allowed_origins, created_at, revoked_at
"""

SELECT_PARTNERS = """
SELECT id, name, source_code, allowed_origins, created_at, revoked_at
FROM partners ORDER BY created_at, id
"""

REVOKE_PARTNER = """
UPDATE partners SET revoked_at = now()
WHERE source_code = $1 AND revoked_at IS NULL
RETURNING id, name, source_code, allowed_origins, created_at, revoked_at
"""

SELECT_ACTIVE_BY_KEY_HASH = """
SELECT id, name, source_code, allowed_origins, created_at, revoked_at
FROM partners WHERE key_hash = $1 AND revoked_at IS NULL
"""

SELECT_ACTIVE_ORIGINS = """
SELECT DISTINCT unnest(allowed_origins) AS origin FROM partners WHERE revoked_at IS NULL
"""


@dataclass(frozen=True)
class Partner:
    id: int
    name: str
    source_code: str
    allowed_origins: list[str]
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Partner:
        return cls(**dict(row))


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def create_partner(
    conn: asyncpg.Pool | asyncpg.Connection, *, name: str, source_code: str, origins: list[str]
) -> tuple[Partner, str]:
    """A new partner and its key: the only time the key exists outside the caller."""
    key = new_key()
    row = await conn.fetchrow(INSERT_PARTNER, name, source_code, origins, hash_key(key))
    return Partner.from_row(row), key


async def list_partners(conn: asyncpg.Pool | asyncpg.Connection) -> list[Partner]:
    return [Partner.from_row(row) for row in await conn.fetch(SELECT_PARTNERS)]


async def revoke_partner(
    conn: asyncpg.Pool | asyncpg.Connection, source_code: str
) -> Partner | None:
    """Revoke an active partner's key and origins; None if none is active by that code."""
    row = await conn.fetchrow(REVOKE_PARTNER, source_code)
    return Partner.from_row(row) if row else None


class PartnerDirectory:
    """Active partners by key hash, and all their origins, cached for a few seconds.

    A revocation takes effect within ``ttl`` seconds. Unknown keys are cached too, so a
    flood of wrong keys costs one query per distinct key per ``ttl`` at most.
    """

    def __init__(self, pool: asyncpg.Pool, *, ttl: float = 2.0, size: int = 10_000) -> None:
        self._pool = pool
        self._by_hash: TTLCache[bytes, Partner | None] = TTLCache(maxsize=size, ttl=ttl)
        self._origins: TTLCache[str, frozenset[str]] = TTLCache(maxsize=1, ttl=ttl)

    async def by_key(self, key: str) -> Partner | None:
        digest = hash_key(key)
        try:
            return self._by_hash[digest]
        except KeyError:
            pass
        row = await self._pool.fetchrow(SELECT_ACTIVE_BY_KEY_HASH, digest)
        partner = Partner.from_row(row) if row else None
        self._by_hash[digest] = partner
        return partner

    async def origins(self) -> frozenset[str]:
        """Every origin of every active partner."""
        try:
            return self._origins["all"]
        except KeyError:
            pass
        rows = await self._pool.fetch(SELECT_ACTIVE_ORIGINS)
        origins = frozenset(row["origin"] for row in rows)
        self._origins["all"] = origins
        return origins
