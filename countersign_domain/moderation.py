"""SQL of the staff API and commands, with the small functions that run it.

Counts change only by changing rows: erasure and invalidation update the flag columns
that ``signatures.counted`` is generated from, and the triggers and the counter worker
carry the change to Redis like any other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from countersign_domain.audit import describe
from countersign_domain.petitions import Petition


@dataclass(frozen=True)
class ManagedPetition(Petition):
    """A petition as staff see it: the public fields and what only staff manage."""

    allowed_origins: list[str]
    closed_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ManagedPetition:
        return cls(**dict(row))


SELECT_MANAGED = """
SELECT id, slug, title, body, target, goal, status, created_at, closes_at,
       allowed_origins, closed_at, require_confirmation
FROM petitions WHERE slug = $1
"""

SELECT_MANAGED_FOR_UPDATE = """
SELECT id, slug, title, body, target, goal, status, created_at, closes_at,
       allowed_origins, closed_at, require_confirmation
FROM petitions WHERE slug = $1
FOR UPDATE
"""

LIST_MANAGED = """
SELECT id, slug, title, body, target, goal, status, created_at, closes_at,
       allowed_origins, closed_at, require_confirmation
FROM petitions ORDER BY created_at DESC, id DESC
"""

INSERT_MANAGED = """
INSERT INTO petitions (slug, title, body, target, goal, status, closes_at, allowed_origins,
                       require_confirmation)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING id, slug, title, body, target, goal, status, created_at, closes_at,
          allowed_origins, closed_at, require_confirmation
"""

# NULL keeps a column as it is; closes_at can be set to NULL, so it has its own flag.
UPDATE_MANAGED = """
UPDATE petitions SET
    title = coalesce($2, title),
    body = coalesce($3, body),
    target = coalesce($4, target),
    goal = coalesce($5, goal),
    allowed_origins = coalesce($6, allowed_origins),
    closes_at = CASE WHEN $7 THEN $8 ELSE closes_at END,
    status = coalesce($9, status),
    require_confirmation = coalesce($10, require_confirmation)
WHERE id = $1
RETURNING id, slug, title, body, target, goal, status, created_at, closes_at,
          allowed_origins, closed_at, require_confirmation
"""


async def fetch_managed(
    conn: asyncpg.Pool | asyncpg.Connection, slug: str, *, for_update: bool = False
) -> ManagedPetition | None:
    row = await conn.fetchrow(SELECT_MANAGED_FOR_UPDATE if for_update else SELECT_MANAGED, slug)
    return ManagedPetition.from_row(row) if row else None


async def list_managed(conn: asyncpg.Pool | asyncpg.Connection) -> list[ManagedPetition]:
    return [ManagedPetition.from_row(row) for row in await conn.fetch(LIST_MANAGED)]


async def insert_managed(
    conn: asyncpg.Pool | asyncpg.Connection, fields: dict[str, Any]
) -> ManagedPetition:
    row = await conn.fetchrow(
        INSERT_MANAGED,
        fields["slug"],
        fields["title"],
        fields.get("body", ""),
        fields.get("target", ""),
        fields.get("goal", 1000),
        fields.get("status", "draft"),
        fields.get("closes_at"),
        fields.get("allowed_origins", []),
        fields.get("require_confirmation", True),
    )
    return ManagedPetition.from_row(row)


async def update_managed(
    conn: asyncpg.Connection, petition_id: int, changes: dict[str, Any]
) -> ManagedPetition:
    row = await conn.fetchrow(
        UPDATE_MANAGED,
        petition_id,
        changes.get("title"),
        changes.get("body"),
        changes.get("target"),
        changes.get("goal"),
        changes.get("allowed_origins"),
        "closes_at" in changes,
        changes.get("closes_at"),
        changes.get("status"),
        changes.get("require_confirmation"),
    )
    return ManagedPetition.from_row(row)


# -- summary --------------------------------------------------------------------------------

# grouping() has a bit set for each column a row is *not* grouped by.
BY_COUNTRY, BY_SOURCE, BY_DAY, OVERALL = 0b011, 0b101, 0b110, 0b111

# One pass over the petition's signatures answers every figure of the summary.
SUMMARY = """
WITH grouped AS (
    SELECT grouping(country, source, day) AS grouping_set, country, source, day,
           count(*) FILTER (WHERE counted) AS counted,
           count(*) FILTER (WHERE invalidated_at IS NOT NULL) AS invalidated,
           count(*) FILTER (WHERE erased_at IS NOT NULL) AS erased,
           min(created_at) FILTER (WHERE counted) AS first_signed_at,
           max(created_at) FILTER (WHERE counted) AS last_signed_at
    FROM (
        SELECT country::text AS country, source, (created_at AT TIME ZONE 'UTC')::date AS day,
               created_at, counted, invalidated_at, erased_at
        FROM signatures WHERE petition_id = $1
    ) AS s
    GROUP BY GROUPING SETS ((country), (source), (day), ())
)
SELECT g.grouping_set, g.country, c.name AS country_name, g.source,
       countersign_csv_safe(g.source) AS source_cell, g.day, g.counted, g.invalidated,
       g.erased, g.first_signed_at, g.last_signed_at
FROM grouped g LEFT JOIN countries c ON c.code = g.country
WHERE g.counted > 0 OR g.grouping_set = 7
ORDER BY g.counted DESC, g.country, g.source, g.day
"""


@dataclass(frozen=True)
class CountryFigure:
    code: str
    name: str
    count: int


@dataclass(frozen=True)
class SourceFigure:
    source: str | None  # None: signed without a source code
    cell: str | None  # the same, safe for a spreadsheet cell
    count: int


@dataclass(frozen=True)
class DayFigure:
    date: date
    count: int


@dataclass(frozen=True)
class Summary:
    total: int
    countries: list[CountryFigure]  # largest first
    sources: list[SourceFigure]  # largest first
    days: list[DayFigure]  # oldest first
    invalidated: int
    erased: int
    first_signed_at: datetime | None
    last_signed_at: datetime | None


async def summarise(conn: asyncpg.Pool | asyncpg.Connection, petition_id: int) -> Summary:
    rows = await conn.fetch(SUMMARY, petition_id)
    [overall] = [row for row in rows if row["grouping_set"] == OVERALL]
    return Summary(
        total=overall["counted"],
        countries=[
            CountryFigure(row["country"], row["country_name"] or row["country"], row["counted"])
            for row in rows
            if row["grouping_set"] == BY_COUNTRY
        ],
        sources=[
            SourceFigure(row["source"], row["source_cell"], row["counted"])
            for row in rows
            if row["grouping_set"] == BY_SOURCE
        ],
        days=sorted(
            (
                DayFigure(row["day"], row["counted"])
                for row in rows
                if row["grouping_set"] == BY_DAY
            ),
            key=lambda figure: figure.date,
        ),
        invalidated=overall["invalidated"],
        erased=overall["erased"],
        first_signed_at=overall["first_signed_at"],
        last_signed_at=overall["last_signed_at"],
    )


# -- fraud: who signed from one network ----------------------------------------------------

REPEATED_IP_HASHES = """
SELECT encode(ip_hash, 'hex') AS ip_hash, count(*) AS signatures,
       count(*) FILTER (WHERE counted) AS counted,
       min(created_at) AS first_signed_at, max(created_at) AS last_signed_at
FROM signatures
WHERE petition_id = $1 AND ip_hash IS NOT NULL
GROUP BY ip_hash
HAVING count(*) >= $2
ORDER BY count(*) DESC, ip_hash
LIMIT 100
"""


async def repeated_ip_hashes(
    conn: asyncpg.Pool | asyncpg.Connection, petition_id: int, min_signatures: int
) -> list[dict[str, Any]]:
    return [dict(row) for row in await conn.fetch(REPEATED_IP_HASHES, petition_id, min_signatures)]


# -- erasure ----------------------------------------------------------------------------------

# Every petition's row for this address, found through the (petition_id, email_hash)
# unique index. Nulling email_hash too means nothing left can be tied to the address.
ERASE_BY_EMAIL_HASH = """
WITH erased AS (
    UPDATE signatures AS s
    SET erased_at = now(), name = NULL, email = NULL, postal_code = NULL,
        ip_hash = NULL, email_hash = NULL
    FROM petitions p
    WHERE s.petition_id = p.id AND s.email_hash = $1
    RETURNING s.petition_id
)
SELECT count(*) AS signatures, count(DISTINCT petition_id) AS petitions FROM erased
"""


async def erase_by_email_hash(conn: asyncpg.Connection, email_hash: bytes) -> tuple[int, int]:
    """Returns (signatures, petitions) erased."""
    row = await conn.fetchrow(ERASE_BY_EMAIL_HASH, email_hash)
    return row["signatures"], row["petitions"]


# -- invalidation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Criteria:
    """Which signatures an invalidation hits: every criterion set must match."""

    source: str | None = None
    ip_hash: bytes | None = None
    email_domain: str | None = None
    signed_after: datetime | None = None  # inclusive
    signed_before: datetime | None = None  # exclusive

    def args(self) -> tuple[Any, ...]:
        return (
            self.source,
            self.ip_hash,
            self.email_domain,
            self.signed_after,
            self.signed_before,
        )

    def describe(self) -> dict[str, str]:
        return describe(self)


# Rows an invalidation would hit: the petition's signatures matching every criterion,
# not yet invalidated (each row belongs to at most one invalidation, so an undo restores
# exactly its own) and not erased (nothing left to clean).
_INVALIDATION_TARGETS = """
FROM signatures s
WHERE s.petition_id = $1 AND s.invalidated_at IS NULL AND s.erased_at IS NULL
  AND ($2::text IS NULL OR s.source = $2)
  AND ($3::bytea IS NULL OR s.ip_hash = $3)
  AND ($4::text IS NULL OR lower(split_part(s.email, '@', 2)) = $4)
  AND ($5::timestamptz IS NULL OR s.created_at >= $5)
  AND ($6::timestamptz IS NULL OR s.created_at < $6)
"""

# Built from constant fragments only; values always travel as parameters.
COUNT_INVALIDATION_TARGETS = "SELECT count(*)" + _INVALIDATION_TARGETS

INSERT_INVALIDATION = """
INSERT INTO invalidations (petition_id, criteria, reason, created_by)
VALUES ($1, $2::jsonb, $3, $4)
RETURNING id, created_at
"""

APPLY_INVALIDATION = (
    """
UPDATE signatures SET invalidated_at = $8, invalid_reason = $9, invalidation_id = $7
WHERE id IN (SELECT s.id"""
    + _INVALIDATION_TARGETS
    + ")"
)

SET_INVALIDATION_COUNT = "UPDATE invalidations SET row_count = $2 WHERE id = $1"

INVALIDATION_COLUMNS = """
SELECT i.id, p.slug, i.criteria::text AS criteria, i.reason, i.created_by, i.created_at,
       i.row_count, i.undone_at, i.undone_by, i.petition_id
FROM invalidations i JOIN petitions p ON p.id = i.petition_id
"""

SELECT_INVALIDATION = INVALIDATION_COLUMNS + "WHERE i.id = $1"
SELECT_INVALIDATION_FOR_UPDATE = INVALIDATION_COLUMNS + "WHERE i.id = $1 FOR UPDATE OF i"
LIST_INVALIDATIONS = INVALIDATION_COLUMNS + "WHERE i.petition_id = $1 ORDER BY i.id DESC"

UNDO_INVALIDATION_ROWS = """
UPDATE signatures SET invalidated_at = NULL, invalid_reason = NULL, invalidation_id = NULL
WHERE invalidation_id = $1
"""

MARK_INVALIDATION_UNDONE = """
UPDATE invalidations SET undone_at = now(), undone_by = $2 WHERE id = $1
"""


@dataclass(frozen=True)
class Invalidation:
    id: int
    petition_id: int
    slug: str
    criteria: dict[str, str]
    reason: str
    created_by: str
    created_at: datetime
    row_count: int
    undone_at: datetime | None
    undone_by: str | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Invalidation:
        return cls(**{**dict(row), "criteria": json.loads(row["criteria"])})


async def count_invalidation_targets(
    conn: asyncpg.Pool | asyncpg.Connection, petition_id: int, criteria: Criteria
) -> int:
    hits: int = await conn.fetchval(COUNT_INVALIDATION_TARGETS, petition_id, *criteria.args())
    return hits


async def apply_invalidation(
    conn: asyncpg.Connection, petition_id: int, criteria: Criteria, reason: str, actor: str
) -> Invalidation:
    async with conn.transaction():
        created = await conn.fetchrow(
            INSERT_INVALIDATION, petition_id, json.dumps(criteria.describe()), reason, actor
        )
        status = await conn.execute(
            APPLY_INVALIDATION,
            petition_id,
            *criteria.args(),
            created["id"],
            created["created_at"],
            reason,
        )
        await conn.execute(SET_INVALIDATION_COUNT, created["id"], _affected(status))
        return Invalidation.from_row(await conn.fetchrow(SELECT_INVALIDATION, created["id"]))


async def fetch_invalidation(
    conn: asyncpg.Pool | asyncpg.Connection, invalidation_id: int
) -> Invalidation | None:
    row = await conn.fetchrow(SELECT_INVALIDATION, invalidation_id)
    return Invalidation.from_row(row) if row else None


async def list_invalidations(
    conn: asyncpg.Pool | asyncpg.Connection, petition_id: int
) -> list[Invalidation]:
    return [Invalidation.from_row(row) for row in await conn.fetch(LIST_INVALIDATIONS, petition_id)]


class AlreadyUndone(Exception):
    pass


async def undo_invalidation(
    conn: asyncpg.Connection, invalidation_id: int, actor: str
) -> tuple[Invalidation, int] | None:
    """Restore exactly the rows the invalidation hit. Returns it (undone) and how many
    rows were restored; None if unknown; raises AlreadyUndone."""
    async with conn.transaction():
        row = await conn.fetchrow(SELECT_INVALIDATION_FOR_UPDATE, invalidation_id)
        if row is None:
            return None
        if row["undone_at"] is not None:
            raise AlreadyUndone
        restored = _affected(await conn.execute(UNDO_INVALIDATION_ROWS, invalidation_id))
        await conn.execute(MARK_INVALIDATION_UNDONE, invalidation_id, actor)
        undone = Invalidation.from_row(await conn.fetchrow(SELECT_INVALIDATION, invalidation_id))
    return undone, restored


# -- retention ----------------------------------------------------------------------------

# Petitions that stopped taking signatures at least $1 ago: closed (closed_at), or still
# marked open but past their close date (the worker closes those within moments).
PETITIONS_CLOSED_FOR = """
SELECT id, slug FROM petitions
WHERE (status = 'closed' AND closed_at <= now() - $1::interval)
   OR (status = 'open' AND closes_at <= now() - $1::interval)
ORDER BY id
"""

# Country, source and times stay, so every count can be rebuilt; `counted` does not
# change, so no counter moves. email_hash and ip_hash go too: keyed hashes are still
# personal data while the key exists, and a petition closed this long needs no
# duplicate check (reopening one lets its earlier signers sign again).
ANONYMISE_SIGNATURES = """
UPDATE signatures
SET name = NULL, email = NULL, postal_code = NULL, email_hash = NULL, ip_hash = NULL,
    anonymised_at = now()
WHERE petition_id = $1 AND anonymised_at IS NULL AND erased_at IS NULL
"""


@dataclass(frozen=True)
class Anonymised:
    petition_id: int
    slug: str
    signatures: int


async def anonymise_closed(conn: asyncpg.Connection, closed_for_days: int) -> list[Anonymised]:
    done = []
    for petition in await conn.fetch(PETITIONS_CLOSED_FOR, timedelta(days=closed_for_days)):
        status = await conn.execute(ANONYMISE_SIGNATURES, petition["id"])
        done.append(Anonymised(petition["id"], petition["slug"], _affected(status)))
    return done


def _affected(status: str) -> int:
    """Rows an INSERT, UPDATE or DELETE touched, from its status tag ("UPDATE 42")."""
    return int(status.split()[-1])
