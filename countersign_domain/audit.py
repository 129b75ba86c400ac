"""The audit log: who read or changed personal data (or a petition), when, how many rows.

``details`` carries filters, criteria, ids and outcomes, never an email, a name or an
address. An action that streams (an export) is recorded before the first byte leaves,
then completed with its row count, so even a process that dies mid-way leaves a trace.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

INSERT_ENTRY = """
INSERT INTO audit_log (actor, action, petition_id, details, row_count)
VALUES ($1, $2, $3, $4::jsonb, $5)
RETURNING id
"""

COMPLETE_ENTRY = """
UPDATE audit_log SET row_count = $2, details = details || $3::jsonb WHERE id = $1
"""

# Filters are optional: NULL matches everything. An action filter ending in "." matches
# every action of that family ("console." for sign-ins and sign-outs).
RECENT_ENTRIES = """
SELECT a.id, a.at, a.actor, a.action, p.slug, a.details::text AS details, a.row_count
FROM audit_log a LEFT JOIN petitions p ON p.id = a.petition_id
WHERE ($2::text IS NULL OR a.actor = $2)
  AND ($3::text IS NULL OR a.action = $3 OR (right($3, 1) = '.' AND starts_with(a.action, $3)))
  AND ($4::text IS NULL OR p.slug = $4)
ORDER BY a.at DESC, a.id DESC
LIMIT $1
"""


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    slug: str | None
    details: dict[str, Any]
    row_count: int | None


def describe(criteria: DataclassInstance) -> dict[str, str]:
    """The fields of a filter or criteria dataclass that are set, as JSON-ready strings."""
    described: dict[str, str] = {}
    for name, value in asdict(criteria).items():
        if isinstance(value, bytes):
            described[name] = value.hex()
        elif isinstance(value, datetime):
            described[name] = value.isoformat()
        elif value is not None:
            described[name] = str(value)
    return described


def cli_actor() -> str:
    """Who runs a command: the operating-system user, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"


async def record(
    conn: asyncpg.Pool | asyncpg.Connection,
    actor: str,
    action: str,
    *,
    petition_id: int | None = None,
    details: dict[str, Any] | None = None,
    row_count: int | None = None,
) -> int:
    entry: int = await conn.fetchval(
        INSERT_ENTRY, actor, action, petition_id, json.dumps(details or {}), row_count
    )
    return entry


async def complete(
    conn: asyncpg.Pool | asyncpg.Connection,
    entry: int,
    row_count: int | None,
    details: dict[str, Any],
) -> None:
    await conn.execute(COMPLETE_ENTRY, entry, row_count, json.dumps(details))


async def recent(
    conn: asyncpg.Pool | asyncpg.Connection,
    limit: int,
    *,
    actor: str | None = None,
    action: str | None = None,
    slug: str | None = None,
) -> list[AuditEntry]:
    """The newest entries first, those matching every filter given."""
    return [
        AuditEntry(
            id=row["id"],
            at=row["at"],
            actor=row["actor"],
            action=row["action"],
            slug=row["slug"],
            details=json.loads(row["details"]),
            row_count=row["row_count"],
        )
        for row in await conn.fetch(RECENT_ENTRIES, limit, actor, action, slug)
    ]
