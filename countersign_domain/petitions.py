"""Petitions: the rows, the admin operations the CLI uses, and a short-lived cache.

The sign and counts paths look a petition up by slug on every request; the cache keeps
that off Postgres. A status change is seen within ``ttl`` seconds, and the signature
INSERT itself re-checks that the petition is open, so a stale cache cannot let a
signature into a closed petition.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from cachetools import TTLCache

SELECT_BY_SLUG = """
SELECT id, slug, title, body, target, goal, status, created_at, closes_at, require_confirmation
FROM petitions WHERE slug = $1
"""

INSERT_PETITION = """
INSERT INTO petitions (slug, title, body, target, goal, status, closes_at, require_confirmation)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id, slug, title, body, target, goal, status, created_at, closes_at, require_confirmation
"""

SET_STATUS = """
UPDATE petitions SET status = $2 WHERE slug = $1
RETURNING id, slug, title, body, target, goal, status, created_at, closes_at, require_confirmation
"""


@dataclass(frozen=True)
class Petition:
    id: int
    slug: str
    title: str
    body: str
    target: str
    goal: int
    status: str
    created_at: datetime
    closes_at: datetime | None
    # Signatures count only once the signer confirms their address by email.
    require_confirmation: bool

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Petition:
        return cls(**dict(row))

    @property
    def is_public(self) -> bool:
        return self.status != "draft"

    @property
    def effective_status(self) -> str:
        """'closed' once the close date has passed, even before anyone updates the row."""
        if self.status == "open" and self.closes_at and self.closes_at <= datetime.now(UTC):
            return "closed"
        return self.status


async def fetch_petition(conn: asyncpg.Pool | asyncpg.Connection, slug: str) -> Petition | None:
    row = await conn.fetchrow(SELECT_BY_SLUG, slug)
    return Petition.from_row(row) if row else None


async def create_petition(
    conn: asyncpg.Pool | asyncpg.Connection,
    *,
    slug: str,
    title: str,
    body: str = "",
    target: str = "",
    goal: int = 1000,
    status: str = "draft",
    closes_at: datetime | None = None,
    require_confirmation: bool = True,
) -> Petition:
    row = await conn.fetchrow(
        INSERT_PETITION, slug, title, body, target, goal, status, closes_at, require_confirmation
    )
    return Petition.from_row(row)


async def set_status(
    conn: asyncpg.Pool | asyncpg.Connection, slug: str, status: str
) -> Petition | None:
    row = await conn.fetchrow(SET_STATUS, slug, status)
    return Petition.from_row(row) if row else None


class PetitionDirectory:
    """Petitions by slug, cached for a few seconds (unknown slugs too)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        ttl: float = 2.0,
        size: int = 10_000,
        timeout: float | None = None,
    ) -> None:
        self._pool = pool
        self._cache: TTLCache[str, Petition | None] = TTLCache(maxsize=size, ttl=ttl)
        self._timeout = timeout  # a hung Postgres must not hang the request (TimeoutError)

    async def get(self, slug: str) -> Petition | None:
        try:
            return self._cache[slug]
        except KeyError:
            pass
        async with asyncio.timeout(self._timeout):
            petition = await fetch_petition(self._pool, slug)
        self._cache[slug] = petition
        return petition
