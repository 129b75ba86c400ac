"""Moderation: suspects, who signed from one network, invalidations (and their undo),
erasure and anonymisation. Each change writes its audit entry here, in the same
transaction; the staff API and the ``countersign`` command only call these functions.

Counts change only by changing rows: erasure and invalidation update the flag columns
that ``signatures.counted`` is generated from, and the triggers and the counter worker
carry the change to Redis like any other (a released suspect starts to count, an
invalidated one never does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from countersign_core.connections import rows_affected, transaction
from countersign_domain import audit
from countersign_domain.errors import InvalidationNotFound, InvalidationUndone, PetitionNotFound
from countersign_domain.signatures import Hasher

# -- suspects: signatures the abuse checks held back ---------------------------------------

# "Awaiting review" in each query: flagged, and neither invalidated nor erased since.
LIST_SUSPECTS = """
SELECT s.id, s.created_at, s.country, s.source, s.suspect_reason, s.name, s.email
FROM signatures s JOIN petitions p ON p.id = s.petition_id
WHERE p.slug = $1
  AND s.suspect_reason IS NOT NULL AND s.invalidated_at IS NULL AND s.erased_at IS NULL
ORDER BY s.id
LIMIT $2
"""

# $1: ids or NULL, $2: petition slug or NULL (at least one is given). A suspect's
# confirmation email was queued held: releasing it sends it, invalidating it drops it.
RELEASE_SUSPECTS = """
WITH released AS (
    UPDATE signatures s SET suspect_reason = NULL
    FROM petitions p
    WHERE p.id = s.petition_id
      AND s.suspect_reason IS NOT NULL AND s.invalidated_at IS NULL AND s.erased_at IS NULL
      AND ($1::bigint[] IS NULL OR s.id = ANY($1)) AND ($2::text IS NULL OR p.slug = $2)
    RETURNING s.id
), emails AS (
    UPDATE email_jobs j SET held = false, next_attempt_at = now()
    FROM released WHERE j.signature_id = released.id AND j.held
)
SELECT id FROM released
"""

INVALIDATE_SUSPECTS = """
WITH invalidated AS (
    UPDATE signatures s SET invalidated_at = now(), invalid_reason = $3
    FROM petitions p
    WHERE p.id = s.petition_id
      AND s.suspect_reason IS NOT NULL AND s.invalidated_at IS NULL AND s.erased_at IS NULL
      AND ($1::bigint[] IS NULL OR s.id = ANY($1)) AND ($2::text IS NULL OR p.slug = $2)
    RETURNING s.id
), emails AS (
    UPDATE email_jobs j SET held = false, failed_at = now(), last_error = 'invalidated'
    FROM invalidated WHERE j.signature_id = invalidated.id AND j.held
)
SELECT id FROM invalidated
"""

PETITION_EXISTS = "SELECT 1 FROM petitions WHERE slug = $1"
PETITION_ID = "SELECT id FROM petitions WHERE slug = $1"


@dataclass(frozen=True)
class Suspect:
    id: int
    created_at: datetime
    country: str
    source: str | None
    reason: str
    name: str
    email: str


async def list_suspects(
    conn: asyncpg.Pool | asyncpg.Connection, slug: str, limit: int
) -> list[Suspect]:
    """A petition's suspects awaiting review, oldest first; PetitionNotFound if none."""
    if not await conn.fetchval(PETITION_EXISTS, slug):
        raise PetitionNotFound
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


async def suspects_with_contact(
    db: asyncpg.Pool | asyncpg.Connection, *, actor: str, slug: str, limit: int
) -> list[Suspect]:
    """``list_suspects`` for someone who asked to see names and emails too: the
    ``suspects.contact`` entry says who saw how many."""
    async with transaction(db) as conn:
        found = await list_suspects(conn, slug, limit)
        await audit.record(
            conn,
            actor,
            "suspects.contact",
            petition_id=await conn.fetchval(PETITION_ID, slug),
            row_count=len(found),
        )
    return found


async def release_suspects(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    actor: str,
    ids: list[int] | None,
    slug: str | None,
) -> list[int]:
    """Clear the suspect flag of these (or all of a petition's) suspects awaiting review;
    returns the ids released, and writes ``suspects.release``. Pass ids, or slug with
    ids=None for all of one petition."""
    _require_selection(ids, slug)
    async with transaction(db) as conn:
        released = [row["id"] for row in await conn.fetch(RELEASE_SUSPECTS, ids, slug)]
        await _record_review(conn, actor, "suspects.release", slug, released)
    return released


async def invalidate_suspects(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    actor: str,
    ids: list[int] | None,
    slug: str | None,
    reason: str,
) -> list[int]:
    """Mark suspects awaiting review invalid (they never count); returns the ids, and
    writes ``suspects.invalidate``."""
    _require_selection(ids, slug)
    async with transaction(db) as conn:
        rows = await conn.fetch(INVALIDATE_SUSPECTS, ids, slug, reason)
        invalidated = [row["id"] for row in rows]
        await _record_review(conn, actor, "suspects.invalidate", slug, invalidated)
    return invalidated


async def _record_review(
    conn: asyncpg.Connection, actor: str, action: str, slug: str | None, ids: list[int]
) -> None:
    await audit.record(
        conn,
        actor,
        action,
        petition_id=await conn.fetchval(PETITION_ID, slug) if slug else None,
        row_count=len(ids),
    )


def _require_selection(ids: list[int] | None, slug: str | None) -> None:
    # Neither would select every suspect of every petition: never what staff mean.
    if not ids and slug is None:
        raise ValueError("give signature ids, or a petition")


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


async def search_ip_hashes(
    db: asyncpg.Pool | asyncpg.Connection, *, actor: str, petition_id: int, min_signatures: int
) -> list[dict[str, Any]]:
    """Keyed IP hashes behind at least ``min_signatures`` signatures (up to 100, largest
    first), and the ``search.ip_hashes`` entry."""
    async with transaction(db) as conn:
        found = [
            dict(row) for row in await conn.fetch(REPEATED_IP_HASHES, petition_id, min_signatures)
        ]
        await audit.record(
            conn,
            actor,
            "search.ip_hashes",
            petition_id=petition_id,
            details={"min_signatures": min_signatures},
            row_count=sum(item["signatures"] for item in found),
        )
    return found


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


@dataclass(frozen=True)
class Erased:
    signatures: int
    petitions: int


async def erase_address(
    db: asyncpg.Pool | asyncpg.Connection, hasher: Hasher, email: str, *, actor: str
) -> Erased:
    """Erase every signature of this (canonical) address, on every petition, and write
    the ``erasure`` entry: neither the address nor its hash, so the log cannot be used
    to find someone."""
    async with transaction(db) as conn:
        row = await conn.fetchrow(ERASE_BY_EMAIL_HASH, hasher.email(email))
        erased = Erased(row["signatures"], row["petitions"])
        await audit.record(
            conn,
            actor,
            "erasure",
            details={"petitions": erased.petitions},
            row_count=erased.signatures,
        )
    return erased


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
        return audit.describe(self)


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


async def dry_run_invalidation(
    db: asyncpg.Pool | asyncpg.Connection, *, actor: str, petition_id: int, criteria: Criteria
) -> int:
    """How many signatures an invalidation would hit (the ``invalidation.dry_run`` entry
    says who asked, and for what)."""
    async with transaction(db) as conn:
        hits: int = await conn.fetchval(COUNT_INVALIDATION_TARGETS, petition_id, *criteria.args())
        await audit.record(
            conn,
            actor,
            "invalidation.dry_run",
            petition_id=petition_id,
            details={"criteria": criteria.describe()},
            row_count=hits,
        )
    return hits


async def apply_invalidation(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    actor: str,
    petition_id: int,
    criteria: Criteria,
    reason: str,
) -> Invalidation:
    """Invalidate the signatures matching ``criteria``, and write ``invalidation.apply``."""
    async with transaction(db) as conn:
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
        await conn.execute(SET_INVALIDATION_COUNT, created["id"], rows_affected(status))
        invalidation = Invalidation.from_row(
            await conn.fetchrow(SELECT_INVALIDATION, created["id"])
        )
        await audit.record(
            conn,
            actor,
            "invalidation.apply",
            petition_id=petition_id,
            details={"invalidation": invalidation.id, "criteria": invalidation.criteria},
            row_count=invalidation.row_count,
        )
    return invalidation


async def list_invalidations(
    conn: asyncpg.Pool | asyncpg.Connection, petition_id: int
) -> list[Invalidation]:
    return [Invalidation.from_row(row) for row in await conn.fetch(LIST_INVALIDATIONS, petition_id)]


async def undo_invalidation(
    db: asyncpg.Pool | asyncpg.Connection, *, actor: str, invalidation_id: int
) -> tuple[Invalidation, int]:
    """Restore exactly the rows the invalidation hit, and write ``invalidation.undo``.
    Returns it (undone) and how many rows were restored. Raises InvalidationNotFound,
    InvalidationUndone."""
    async with transaction(db) as conn:
        row = await conn.fetchrow(SELECT_INVALIDATION_FOR_UPDATE, invalidation_id)
        if row is None:
            raise InvalidationNotFound
        if row["undone_at"] is not None:
            raise InvalidationUndone
        restored = rows_affected(await conn.execute(UNDO_INVALIDATION_ROWS, invalidation_id))
        await conn.execute(MARK_INVALIDATION_UNDONE, invalidation_id, actor)
        undone = Invalidation.from_row(await conn.fetchrow(SELECT_INVALIDATION, invalidation_id))
        await audit.record(
            conn,
            actor,
            "invalidation.undo",
            petition_id=undone.petition_id,
            details={"invalidation": undone.id},
            row_count=restored,
        )
    return undone, restored


# -- anonymisation --------------------------------------------------------------------------

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


async def anonymise_closed(
    db: asyncpg.Pool | asyncpg.Connection, *, actor: str, closed_for_days: int
) -> list[Anonymised]:
    """Anonymise the signatures of petitions closed ``closed_for_days`` ago or more, with
    an ``anonymise`` entry for each petition."""
    done = []
    async with transaction(db) as conn:
        for petition in await conn.fetch(PETITIONS_CLOSED_FOR, timedelta(days=closed_for_days)):
            status = await conn.execute(ANONYMISE_SIGNATURES, petition["id"])
            anonymised = Anonymised(petition["id"], petition["slug"], rows_affected(status))
            await audit.record(
                conn,
                actor,
                "anonymise",
                petition_id=anonymised.petition_id,
                details={"closed_for_days": closed_for_days},
                row_count=anonymised.signatures,
            )
            done.append(anonymised)
    return done
