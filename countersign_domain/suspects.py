"""Suspect signatures: listing them for review, releasing or invalidating them.

Staff change flags in Postgres only; the triggers and the counter worker move the counts
(a released signature starts to count, an invalidated one never does). Used by
``countersign suspects``; the admin API can use the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

# "Awaiting review" in each query: flagged, and neither invalidated nor erased since.
LIST_SUSPECTS = """
SELECT s.id, s.created_at, s.country, s.source, s.suspect_reason, s.name, s.email
FROM signatures s JOIN petitions p ON p.id = s.petition_id
WHERE p.slug = $1
  AND s.suspect_reason IS NOT NULL AND s.invalidated_at IS NULL AND s.erased_at IS NULL
ORDER BY s.id
LIMIT $2
"""

# $1: ids or NULL, $2: petition slug or NULL (at least one is given).
RELEASE = """
UPDATE signatures s SET suspect_reason = NULL
FROM petitions p
WHERE p.id = s.petition_id
  AND s.suspect_reason IS NOT NULL AND s.invalidated_at IS NULL AND s.erased_at IS NULL
  AND ($1::bigint[] IS NULL OR s.id = ANY($1)) AND ($2::text IS NULL OR p.slug = $2)
RETURNING s.id
"""

INVALIDATE = """
UPDATE signatures s SET invalidated_at = now(), invalid_reason = $3
FROM petitions p
WHERE p.id = s.petition_id
  AND s.suspect_reason IS NOT NULL AND s.invalidated_at IS NULL AND s.erased_at IS NULL
  AND ($1::bigint[] IS NULL OR s.id = ANY($1)) AND ($2::text IS NULL OR p.slug = $2)
RETURNING s.id
"""

PETITION_EXISTS = "SELECT 1 FROM petitions WHERE slug = $1"


@dataclass(frozen=True)
class Suspect:
    id: int
    created_at: datetime
    country: str
    source: str | None
    reason: str
    name: str
    email: str


async def list_suspects(conn: asyncpg.Connection, slug: str, limit: int) -> list[Suspect]:
    rows = await conn.fetch(LIST_SUSPECTS, slug, limit)
    return [
        Suspect(
            row["id"],
            row["created_at"],
            row["country"],
            row["source"],
            row["suspect_reason"],
            row["name"],
            row["email"],
        )
        for row in rows
    ]


async def release(
    conn: asyncpg.Connection, *, ids: list[int] | None, slug: str | None
) -> list[int]:
    """Clear the suspect flag of these (or all of a petition's) suspects awaiting review;
    returns the ids released. Pass ids, or slug with ids=None for all of one petition."""
    _require_selection(ids, slug)
    return [row["id"] for row in await conn.fetch(RELEASE, ids, slug)]


async def invalidate(
    conn: asyncpg.Connection, *, ids: list[int] | None, slug: str | None, reason: str
) -> list[int]:
    """Mark suspects awaiting review invalid (they never count); returns the ids."""
    _require_selection(ids, slug)
    return [row["id"] for row in await conn.fetch(INVALIDATE, ids, slug, reason)]


def _require_selection(ids: list[int] | None, slug: str | None) -> None:
    # Neither would select every suspect of every petition: never what staff mean.
    if not ids and slug is None:
        raise ValueError("give signature ids, or a petition")


async def petition_exists(conn: asyncpg.Connection, slug: str) -> bool:
    return bool(await conn.fetchval(PETITION_EXISTS, slug))
