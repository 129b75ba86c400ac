"""Partners: the sites and organisations that bring signers, and their API keys.

A partner's key is ``cs_partner_`` plus 32 random bytes (URL-safe base64). Only its
SHA-256 is stored: a key that random cannot be guessed from its hash, so no slow hash
is needed, and lookups stay one indexed equality. The key is shown once, at creation.

A partner works on the petitions staff grant it (``grant_petition``; audited): with its
key it signs server to server on those only (``Authorization: Bearer <key>`` on the usual
sign endpoint, the source forced to the partner's code) and reads its figures there
(``GET /v1/partner/counts?petition=slug``), and only those petitions allow its origins.

A partner's figures count its submissions (``partner_submissions``: one per address its
code came with), never the signatures: see ``PARTNER_FIGURES``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, fields
from datetime import datetime

import asyncpg
from cachetools import TTLCache

from countersign_core.connections import transaction, within
from countersign_domain import audit
from countersign_domain.errors import GrantNotFound, PartnerNotFound
from countersign_domain.petitions import managed_petition

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

SELECT_ACTIVE_BY_CODE = """
SELECT id, name, source_code, allowed_origins, created_at, revoked_at
FROM partners WHERE source_code = $1 AND revoked_at IS NULL
"""

# Granting again keeps the first grant's time.
INSERT_GRANT = """
INSERT INTO partner_grants (petition_id, partner_id) VALUES ($1, $2)
ON CONFLICT (petition_id, partner_id) DO UPDATE SET granted_at = partner_grants.granted_at
RETURNING granted_at
"""

DELETE_GRANT = "DELETE FROM partner_grants WHERE petition_id = $1 AND partner_id = $2"

SELECT_GRANTED = """
SELECT pa.id, pa.name, pa.source_code, pa.allowed_origins, pa.created_at, pa.revoked_at,
       g.granted_at
FROM partner_grants g JOIN partners pa ON pa.id = g.partner_id
WHERE g.petition_id = $1
ORDER BY pa.source_code
"""

SELECT_ALL_GRANTS = """
SELECT pa.source_code, p.slug, p.title, g.granted_at
FROM partner_grants g
JOIN partners pa ON pa.id = g.partner_id
JOIN petitions p ON p.id = g.petition_id
ORDER BY pa.source_code, p.slug
"""

IS_GRANTED = (
    "SELECT EXISTS (SELECT 1 FROM partner_grants WHERE partner_id = $1 AND petition_id = $2)"
)

# What a partner sees of a petition: its submissions only. Pending ones wait for their
# own email (they are purged like unconfirmed signatures); confirmed ones count while
# their signature counts. Whether the address had signed before changes none of it.
PARTNER_FIGURES = """
SELECT count(*) FILTER (WHERE ps.confirmed_at IS NOT NULL AND s.counted) AS confirmed,
       count(*) FILTER (WHERE ps.confirmed_at IS NULL) AS pending
FROM partner_submissions ps JOIN signatures s ON s.id = ps.signature_id
WHERE ps.partner_id = $1 AND s.petition_id = $2
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
        return cls(**{field.name: row[field.name] for field in fields(cls)})


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def create_partner(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    actor: str,
    name: str,
    source_code: str,
    origins: list[str],
) -> tuple[Partner, str]:
    """A new partner and its key: the only time the key exists outside the caller. The
    ``partner.create`` entry names its code (never the key). Raises
    asyncpg.UniqueViolationError when the code is taken."""
    key = new_key()
    async with transaction(db) as conn:
        row = await conn.fetchrow(INSERT_PARTNER, name, source_code, origins, hash_key(key))
        await audit.record(conn, actor, "partner.create", details={"partner": source_code})
    return Partner.from_row(row), key


async def list_partners(conn: asyncpg.Pool | asyncpg.Connection) -> list[Partner]:
    return [Partner.from_row(row) for row in await conn.fetch(SELECT_PARTNERS)]


async def revoke_partner(
    db: asyncpg.Pool | asyncpg.Connection, *, actor: str, source_code: str
) -> Partner | None:
    """Revoke an active partner's key and origins, with the ``partner.revoke`` entry; None
    (and no entry) if none is active by that code."""
    async with transaction(db) as conn:
        row = await conn.fetchrow(REVOKE_PARTNER, source_code)
        if row is None:
            return None
        await audit.record(conn, actor, "partner.revoke", details={"partner": source_code})
    return Partner.from_row(row)


async def _active_partner(conn: asyncpg.Connection, source_code: str) -> Partner:
    row = await conn.fetchrow(SELECT_ACTIVE_BY_CODE, source_code)
    if row is None:
        raise PartnerNotFound
    return Partner.from_row(row)


@dataclass(frozen=True)
class Grant:
    partner: Partner
    granted_at: datetime


async def grant_petition(
    db: asyncpg.Pool | asyncpg.Connection, *, actor: str, source_code: str, slug: str
) -> Grant:
    """Let the partner sign and read figures on this petition, and its origins embed it;
    the ``partner.grant`` entry. Granting again changes nothing. Raises PartnerNotFound,
    PetitionNotFound."""
    async with transaction(db) as conn:
        partner = await _active_partner(conn, source_code)
        petition = await managed_petition(conn, slug)
        granted_at = await conn.fetchval(INSERT_GRANT, petition.id, partner.id)
        await audit.record(
            conn, actor, "partner.grant", petition_id=petition.id, details={"partner": source_code}
        )
    return Grant(partner, granted_at)


async def revoke_grant(
    db: asyncpg.Pool | asyncpg.Connection, *, actor: str, source_code: str, slug: str
) -> None:
    """Take the petition back from the partner (within seconds: the caches' ``ttl``); the
    ``partner.revoke_grant`` entry. Raises PartnerNotFound, PetitionNotFound, GrantNotFound."""
    async with transaction(db) as conn:
        partner = await _active_partner(conn, source_code)
        petition = await managed_petition(conn, slug)
        if (await conn.execute(DELETE_GRANT, petition.id, partner.id)).endswith(" 0"):
            raise GrantNotFound
        await audit.record(
            conn,
            actor,
            "partner.revoke_grant",
            petition_id=petition.id,
            details={"partner": source_code},
        )


async def granted_partners(conn: asyncpg.Pool | asyncpg.Connection, slug: str) -> list[Grant]:
    """The partners granted this petition (revoked ones included, as such). Raises
    PetitionNotFound."""
    petition = await managed_petition(conn, slug)
    rows = await conn.fetch(SELECT_GRANTED, petition.id)
    return [Grant(Partner.from_row(row), row["granted_at"]) for row in rows]


@dataclass(frozen=True)
class GrantedPetition:
    slug: str
    title: str
    granted_at: datetime


async def grants_by_partner(
    conn: asyncpg.Pool | asyncpg.Connection,
) -> dict[str, list[GrantedPetition]]:
    """Every partner's granted petitions, by source code (partners with none left out)."""
    found: dict[str, list[GrantedPetition]] = {}
    for row in await conn.fetch(SELECT_ALL_GRANTS):
        found.setdefault(row["source_code"], []).append(
            GrantedPetition(row["slug"], row["title"], row["granted_at"])
        )
    return found


@dataclass(frozen=True)
class PartnerFigures:
    confirmed: int  # credited: confirmed submissions whose signature counts
    pending: int  # waiting for their email to be confirmed


async def partner_figures(
    conn: asyncpg.Pool | asyncpg.Connection, partner_id: int, petition_id: int
) -> PartnerFigures:
    row = await conn.fetchrow(PARTNER_FIGURES, partner_id, petition_id)
    return PartnerFigures(row["confirmed"], row["pending"])


class PartnerDirectory:
    """Active partners by key hash, and the petitions granted them, cached for a few
    seconds.

    A revocation takes effect within ``ttl`` seconds. Unknown keys are cached too, so a
    flood of wrong keys costs one query per distinct key per ``ttl`` at most.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        ttl: float = 2.0,
        size: int = 10_000,
        timeout: float | None = None,
    ) -> None:
        self._pool = pool
        self._timeout = timeout
        self._by_hash: TTLCache[bytes, Partner | None] = TTLCache(maxsize=size, ttl=ttl)
        self._grants: TTLCache[tuple[int, int], bool] = TTLCache(maxsize=size, ttl=ttl)

    async def by_key(self, key: str) -> Partner | None:
        digest = hash_key(key)
        try:
            return self._by_hash[digest]
        except KeyError:
            pass
        row = await within(self._timeout, self._pool.fetchrow(SELECT_ACTIVE_BY_KEY_HASH, digest))
        partner = Partner.from_row(row) if row else None
        self._by_hash[digest] = partner
        return partner

    async def granted(self, partner: Partner, petition_id: int) -> bool:
        """Whether the partner is granted the petition."""
        key = (partner.id, petition_id)
        try:
            return self._grants[key]
        except KeyError:
            pass
        granted = bool(
            await within(self._timeout, self._pool.fetchval(IS_GRANTED, partner.id, petition_id))
        )
        self._grants[key] = granted
        return granted
